"""Lifecycle: what happens to a model after its first build.

``promotion`` (promote, rollback, the judgement between two versions) and ``retrain``;
both reuse build's public stages to make a bento, and runtime's registry to move the
production pointer.
"""
