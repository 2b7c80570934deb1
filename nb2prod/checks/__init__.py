"""Input contracts: what to check (``suite``) apart from how (``compiled``, ``ge_runner``).

- ``suite``     the expectation suite as data: drafted from a DataFrame, edited, stored
                as Great Expectations suite JSON (``n2p.expect``).
- ``compiled``  the request-path validator: vectorized pandas/numpy, never imports GE.
- ``ge_runner`` batch validation of whole data sets with real Great Expectations.
- ``results``   the result records both validators return, so callers cannot tell
                them apart (parity tests compare them field by field).
"""
