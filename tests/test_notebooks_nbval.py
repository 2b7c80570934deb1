"""Every notebook we ship runs top to bottom under nbval (``--nbval-lax``).

Only cells marked ``# NBVAL_CHECK_OUTPUT`` have their outputs compared; the rest must
just run. The notebooks' ``save_model`` calls write into the tests' temporary BentoML home.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SHIPPED = sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("examples/**/*.ipynb")])


def test_the_shipped_notebooks_are_found():
    assert {p.name for p in SHIPPED} >= {"breast_cancer.ipynb", "loan_approval.ipynb"}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_notebook_runs_under_nbval(notebook):
    # the python3 kernelspec runs `python` from PATH: make it this interpreter
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--nbval-current-env", "-c", os.devnull,
                           "--rootdir", str(notebook.parent), str(notebook)],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PATH": path})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1] and "failed" not in proc.stdout
