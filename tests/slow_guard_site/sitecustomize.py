"""On PYTHONPATH only during a ``-m "not slow"`` run: guard this child process too.

See tests/slow_guard.py. Loaded by file path, so the child's ``sys.path`` is not changed.
"""

import importlib.util
import os
from pathlib import Path

if os.environ.get("NB2PROD_TEST_SLOW_GUARD"):
    _spec = importlib.util.spec_from_file_location(
        "_nb2prod_slow_guard", Path(__file__).resolve().parent.parent / "slow_guard.py")
    _guard = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_guard)
    _guard.install(os.environ["NB2PROD_TEST_SLOW_GUARD"])
