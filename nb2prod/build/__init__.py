"""Build: notebook → bento, one stage per module.

read (``notebook``, ``directives``, ``scan``) → execute (papermill) → extract (AST) →
``packaging``: render, the generated tests and ``bentoml build`` (the one way a bento is
made, for lifecycle too); ``pipeline`` tells the story.
"""
