"""The fast run's safety net: in a ``-m "not slow"`` run, a test that starts a Jupyter
kernel, a server or ``bentoml build`` fails, and the failure says to mark it slow.

Every kernel, server and command starts through ``subprocess.Popen`` (jupyter_client's
kernel launcher included), so the guard wraps ``Popen.__init__``: a refused command
raises where it was started and is appended to a log. The test process reads the log
after each test phase (tests/conftest.py), so a test cannot hide a refusal by catching
the error or by expecting a failed command. Python processes the tests start install the
same guard before anything else runs: while a fast run lasts, ``slow_guard_site/`` is on
``PYTHONPATH`` and its ``sitecustomize`` calls :func:`install`. A ``nb2prod build`` that
reaches its kernel is refused in the build's own process.

This module imports only the standard library: it runs at start-up of every child.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

LOG = "NB2PROD_TEST_SLOW_GUARD"  # the refusals log; set only while a fast run lasts
SITE = Path(__file__).resolve().with_name("slow_guard_site")

KERNELS = {"ipykernel_launcher", "ipykernel"}
SERVERS = {"uvicorn", "gunicorn"}
BENTOML_SLOW = {"serve", "build", "containerize", "start-http-server", "start-runner-server"}
_ARGUMENT_OPTIONS = {"-X", "-W"}  # python options whose value is the next word

# the real one, also when this process's sitecustomize already installed a guard
_original_init = getattr(subprocess.Popen.__init__, "__wrapped__", subprocess.Popen.__init__)


class SlowInFastRun(RuntimeError):
    """A command only a test marked ``slow`` may start."""


def _argv(args) -> list[str]:
    """``args`` as Popen takes it (a list, or one string or path), as a list of words."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return shlex.split(os.fsdecode(args))
    return [os.fsdecode(a) for a in args]


def _program(argv: list[str]) -> tuple[str, list[str]]:
    """What ``argv`` runs, as ``(program, arguments)``: ``python -m MODULE`` is MODULE."""
    if not argv:
        return "", []
    program, rest = Path(argv[0]).name, argv[1:]
    if program.startswith("python"):
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            if rest[i] == "-m":
                return (rest[i + 1], rest[i + 2:]) if i + 1 < len(rest) else ("", [])
            if rest[i] == "-c":
                break
            i += 2 if rest[i] in _ARGUMENT_OPTIONS else 1
    return program, rest


def refusal(args) -> str | None:
    """Why a fast test may not start the command ``args`` (as Popen takes it), or None."""
    program, rest = _program(_argv(args))
    if program.split(".")[0] in KERNELS:
        return "a Jupyter kernel"
    if program in SERVERS:
        return f"a server ({program})"
    if program.split(".")[0] == "bentoml":
        command = next((a for a in rest if not a.startswith("-")), "")
        if command in BENTOML_SLOW:
            return f"`bentoml {command}`"
    return None


def install(log: str | os.PathLike) -> None:
    """Refuse, in this process, every command :func:`refusal` names; record each in ``log``."""

    def guarded_init(self, args, *more, **kwargs):
        reason = refusal(args)
        if reason is None:
            return _original_init(self, args, *more, **kwargs)
        command = shlex.join(_argv(args))
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"pid": os.getpid(), "started": reason, "command": command})
                      + "\n")
        self._child_created = False  # Popen.__del__ reads it: nothing to clean up
        raise SlowInFastRun(f"a fast test started {reason}: {command}")

    guarded_init.__wrapped__ = _original_init
    subprocess.Popen.__init__ = guarded_init


def start(log: Path) -> None:
    """Guard this process and every Python process started from now on."""
    log.write_text("")
    os.environ[LOG] = str(log)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SITE), os.environ.get("PYTHONPATH")) if p)
    install(log)


class Refusals:
    """The log's new entries since the last read."""

    def __init__(self, log: Path):
        self.log, self.offset = log, 0

    def new(self) -> list[dict]:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]  # a child may be writing its line right now
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines()]


def message(nodeid: str, refusals: list[dict]) -> str:
    """The failure: what the test started, and how to mark it."""
    started = "\n".join(f"  {r['started']}: {r['command']}"
                        + ("" if r["pid"] == os.getpid() else f"  (in child process {r['pid']})")
                        for r in refusals)
    return (f"{nodeid} is not marked slow, but it started:\n{started}\n"
            "how to fix: mark it @pytest.mark.slow (or its whole file: pytestmark = "
            "pytest.mark.slow); tests/conftest.py says what counts as slow")
