"""Authoring: what runs in the data scientist's kernel.

``save_model`` (capture, proof, drafting the contract), the magics, the readiness panel,
the doctor's checklist and ``nb2prod new``'s scaffold. It may use build (reading and
extracting the notebook it runs in), runtime, checks and core; never lifecycle.
"""
