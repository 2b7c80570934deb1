"""Test set-up: a private BentoML home for the whole session, set before BentoML loads;
fixtures and helpers several test files share.

A test is ``slow`` when it starts a Jupyter kernel (papermill, nbclient, nbval, or
``nb2prod build``/``retrain``/``test``/``doctor --run`` on a notebook that gets as far as
running), a server (``bentoml serve``), ``bentoml build``, or other work that takes
seconds on its own (worker processes racing on one database or registry, the Hypothesis
parity sweep over Great Expectations); everything else is fast (``make test-fast``:
``pytest -m "not slow"``). The ``e2e`` mark is a kind of slow: a real build served over
HTTP (``-m "not e2e"`` keeps the other slow tests).

In a run whose ``-m`` selects no slow test, tests/slow_guard.py fails any test that
starts a kernel, a server or ``bentoml build``, in its own process or in a child.
"""

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import slow_guard

_HOME = tempfile.mkdtemp(prefix="nb2prod-test-bentoml-")
os.environ["BENTOML_HOME"] = _HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
FLAGSHIP = ROOT / "notebooks" / "breast_cancer.ipynb"
NB2PROD = [sys.executable, "-m", "nb2prod.cli"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


_refusals = None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Freeze what collection imported; guard a ``-m`` run that selected no slow test."""
    global _refusals
    # IPython's reset() (the shell fixtures) runs a full gc.collect(): with Great
    # Expectations, torch and pandas imported, each one scanned millions of objects
    # (0.3 s, a sixth of the fast run). Frozen, the imports' objects are not scanned again.
    gc.collect()
    gc.freeze()
    selected_slow = any(item.get_closest_marker("slow") for item in session.items)
    if session.config.option.markexpr and not selected_slow:
        log = Path(_HOME) / "slow-guard.jsonl"
        slow_guard.start(log)
        _refusals = slow_guard.Refusals(log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A phase in which the guard refused a command fails, whatever the test made of it."""
    report = yield
    refused = _refusals.new() if _refusals else []
    if refused:
        earlier = f"\n\n{report.longrepr}" if report.failed else ""
        report.outcome = "failed"
        report.longrepr = slow_guard.message(item.nodeid, refused) + earlier
    return report


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """Each test once on SQLite and once on PostgreSQL (skipped only if none answers):
    a ``Db`` from tests/audit_db.py."""
    import sqlalchemy as sa  # imported here: most runs never ask for a database
    from audit_db import PG_URL, Db, pg_answers

    if request.param == "postgresql" and not pg_answers():
        pytest.skip(f"no PostgreSQL answers at {sa.make_url(PG_URL).render_as_string()}; "
                    "start one (or set NB2PROD_TEST_PG_URL) to run the PostgreSQL variant")
    handle = Db(request.param, tmp_path)
    yield handle
    handle.close()


@pytest.fixture
def fixture_nb():
    """Path of a scenario notebook in tests/notebooks/."""
    return lambda scenario: NOTEBOOKS / f"{scenario}.ipynb"

# Served services in tests audit into a throwaway SQLite file unless a test says otherwise.
os.environ["NB2PROD_AUDIT_URL"] = f"sqlite:///{_HOME}/audit.db"
# ... and reload only when a test asks (POST /admin/reload), not on their own when a test
# promotes: tests/test_workers.py turns the registry poll on where it tests it.
os.environ["NB2PROD_REGISTRY_POLL_S"] = "0"


def nb2prod(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``nb2prod ARGS...`` as a user runs it, in a subprocess: its exit code and output."""
    return subprocess.run([*NB2PROD, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env)


def built(notebook, out, *args, env=None) -> dict:
    """``nb2prod build NOTEBOOK --out OUT ARGS...``, which must succeed: its manifest."""
    proc = nb2prod("build", notebook, "--out", out, *args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((Path(out) / "nb2prod.json").read_text())


def label_of(path, text) -> str:
    """The label of the cell containing ``text`` (fixtures change; cell numbers follow)."""
    from nb2prod.build.notebook import read  # nb2prod loads after BENTOML_HOME is set

    return next(c.label for c in read(path).cells if text in c.source)


@pytest.fixture(scope="session")
def flagship_build(tmp_path_factory):
    """The flagship built once per test session: its nb2prod.json manifest."""
    return built(FLAGSHIP, tmp_path_factory.mktemp("build") / "breast_cancer")
