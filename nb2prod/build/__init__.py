"""Build: notebook → bento, one stage per module.

read (``notebook``, ``directives``, ``scan``) → execute (papermill) → extract (AST) →
render → verify (the generated tests) → package (``bentoml build``); ``pipeline`` tells
the story and holds the public stage functions that lifecycle reuses.
"""
