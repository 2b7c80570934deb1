"""tests/slow_guard.py: what a fast run refuses, in the test process and in its children,
and that a test which swallows the refusal still fails."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import slow_guard

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@pytest.mark.parametrize("args, started", [
    ([PYTHON, "-m", "ipykernel_launcher", "-f", "kernel.json"], "a Jupyter kernel"),
    (["python3", "-X", "utf8", "-m", "ipykernel", "-f", "k.json"], "a Jupyter kernel"),
    ([PYTHON, "-m", "bentoml", "serve", "flagship:latest", "--port", "3000"], "`bentoml serve`"),
    (["/venv/bin/bentoml", "--verbose", "build", "."], "`bentoml build`"),
    ("bentoml serve service:Svc", "`bentoml serve`"),
    ([PYTHON, "-m", "uvicorn", "app:app"], "a server (uvicorn)"),
])
def test_kernels_servers_and_bento_builds_are_refused(args, started):
    assert slow_guard.refusal(args) == started


@pytest.mark.parametrize("args", [
    [PYTHON, "-m", "nb2prod.cli", "build", "nope.ipynb"],  # its kernel is the child's to refuse
    [PYTHON, "-c", "import ipykernel_launcher"],
    [PYTHON, "script.py", "-m", "bentoml"],  # the script's arguments, not python's
    ["bentoml", "models", "list"],
    [],
])
def test_other_commands_are_let_through(args):
    assert slow_guard.refusal(args) is None


def test_a_refused_command_raises_and_is_logged(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", subprocess.Popen.__init__)  # restored after
    log = tmp_path / "refused.jsonl"
    slow_guard.install(log)
    with pytest.raises(slow_guard.SlowInFastRun, match="started a Jupyter kernel"):
        subprocess.run([PYTHON, "-m", "ipykernel_launcher", "-f", "x.json"])
    assert subprocess.run([PYTHON, "-c", "pass"]).returncode == 0
    [entry] = slow_guard.Refusals(log).new()
    assert entry["started"] == "a Jupyter kernel" and entry["pid"] == os.getpid()
    assert entry["command"].endswith("-m ipykernel_launcher -f x.json")


def test_a_child_python_process_is_guarded_through_sitecustomize(tmp_path):
    log = tmp_path / "refused.jsonl"
    log.write_text("")
    child = ("import subprocess, sys; "
             "subprocess.run([sys.executable, '-m', 'bentoml', 'serve', 'x'])")
    env = {**os.environ, slow_guard.LOG: str(log), "PYTHONPATH": str(slow_guard.SITE)}
    proc = subprocess.run([PYTHON, "-c", child], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "SlowInFastRun" in proc.stderr
    [entry] = slow_guard.Refusals(log).new()
    assert entry["started"] == "`bentoml serve`" and entry["pid"] != os.getpid()


def test_a_fast_run_fails_a_test_that_hides_what_it_started(tmp_path):
    """A pytest run of its own, with this suite's conftest as a plugin: a test that
    catches the refusal, and one whose child starts the kernel, both fail."""
    (tmp_path / "test_hiding.py").write_text(textwrap.dedent("""
        import subprocess, sys
        import pytest

        def test_catches_the_refusal():
            try:
                subprocess.run([sys.executable, "-m", "ipykernel_launcher"])
            except Exception:
                pass

        def test_expects_its_child_to_fail():
            child = ("import subprocess, sys; "
                     "subprocess.run([sys.executable, '-m', 'ipykernel_launcher'])")
            assert subprocess.run([sys.executable, "-c", child]).returncode == 1

        def test_starts_nothing():
            assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0

        @pytest.mark.slow
        def test_deselected():
            raise AssertionError("a slow test ran in a fast run")
    """))
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([PYTHON, "-m", "pytest", "-p", "conftest", "-m", "not slow", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull,
                           str(tmp_path / "test_hiding.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    out = proc.stdout
    assert "2 failed, 1 passed, 1 deselected" in out, out + proc.stderr
    assert "test_hiding.py::test_catches_the_refusal is not marked slow, but it started:" in out
    assert "test_hiding.py::test_expects_its_child_to_fail is not marked slow" in out
    assert "(in child process" in out
    assert "how to fix: mark it @pytest.mark.slow" in out
