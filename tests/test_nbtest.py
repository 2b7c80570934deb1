"""``nb2prod test NOTEBOOK``: nbval on the notebook plus the build's tests, one summary.

A real build is tested end to end in test_init.py; here small notebooks and a stand-in
build directory show how each part is counted and when the command fails.
"""

import subprocess

import nbformat
import pytest
from conftest import NB2PROD
from nbformat.v4 import new_code_cell, new_notebook, new_output


def nb2prod_test(*args, cwd):
    return subprocess.run([*NB2PROD, "test", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True)


def write_notebook(path, printed="2\n", extra=()):
    """x = 2; a checked cell whose stored output is ``printed``; a skipped cell that would
    raise; a cell expected to raise; an unchecked cell whose output varies."""
    checked = new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x)", execution_count=2,
                            outputs=[new_output("stream", name="stdout", text=printed)])
    cells = [new_code_cell("x = 1 + 1"), checked,
             new_code_cell("# NBVAL_SKIP\nraise RuntimeError('only on my laptop')"),
             new_code_cell("# NBVAL_RAISES_EXCEPTION\n1 / 0"),
             new_code_cell("print('varies', id(x))"), *extra]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


def write_build(folder, failing=False):
    """A stand-in build directory: tests/ with one passing test (and one failing)."""
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_service.py").write_text(
        "def test_answers():\n    assert 1 + 1 == 2\n"
        + ("\n\ndef test_schema():\n    assert 'schema' == 'broken'\n" if failing else ""))
    return folder


@pytest.mark.slow
def test_a_good_notebook_without_a_build_passes_and_says_the_build_was_not_run(tmp_path):
    write_notebook(tmp_path / "good.ipynb")
    proc = nb2prod_test("good.ipynb", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the NBVAL_SKIP cell is skipped, the others pass: markers are respected
    assert proc.stdout.splitlines()[-4:] == [
        "nb2prod test good.ipynb",
        "  notebook (nbval)  good.ipynb: 4 passed, 0 failed, 1 skipped",
        "  service tests     build/good/tests: not run: no build yet: run nb2prod build "
        "good.ipynb, or pass --build DIR",
        "all parts passed"]


@pytest.mark.slow
def test_a_cell_that_raises_or_a_changed_checked_output_fails_the_notebook_part(tmp_path):
    write_notebook(tmp_path / "bad.ipynb", printed="3\n",
                   extra=[new_code_cell("raise ValueError('training diverged')")])
    write_build(tmp_path / "build" / "bad")
    proc = nb2prod_test("bad.ipynb", cwd=tmp_path)
    assert proc.returncode == 1
    assert "  notebook (nbval)  bad.ipynb: 3 passed, 2 failed, 1 skipped" in proc.stdout
    # the build found under build/<name> still runs, and passes
    assert "  service tests     build/bad/tests: 1 passed, 0 failed" in proc.stdout
    assert proc.stdout.rstrip().endswith("FAILED: notebook (nbval)")
    assert "ValueError: training diverged" in proc.stderr  # the end of pytest's output


@pytest.mark.slow
def test_failing_service_tests_fail_the_command(tmp_path):
    write_notebook(tmp_path / "good.ipynb")
    write_build(tmp_path / "elsewhere", failing=True)
    proc = nb2prod_test("good.ipynb", "--build", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 1
    assert "  service tests     elsewhere/tests: 1 passed, 1 failed" in proc.stdout
    assert proc.stdout.rstrip().endswith("FAILED: service tests")
    assert "assert 'schema' == 'broken'" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["nope.ipynb"], "error: no such file: nope.ipynb"),
    (["good.ipynb", "--build", "missing"], "error: missing is not an nb2prod build directory "
                                           "(it has no tests/)"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    write_notebook(tmp_path / "good.ipynb")
    proc = nb2prod_test(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
