"""Start and stop ``bentoml serve`` on a free localhost port (demo, tests, benchmarks).

Servers bind to 127.0.0.1 only, log to a file (a pipe nobody reads would fill up and
stall a busy server); stopping one stops its workers too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``bentoml serve TARGET`` process group on 127.0.0.1."""

    def __init__(
        self,
        target: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log: str | Path | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (
            Path(log) if log else Path(tempfile.mkstemp(prefix="bentoml-serve-", suffix=".log")[1])
        )
        env = {**(env or os.environ), "BENTOML_DO_NOT_TRACK": "true"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bentoml",
                    "serve",
                    target,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        """Everything the server has printed so far."""
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait for ``/readyz``; raise ``RuntimeError`` with the server's output if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"{self.url} not ready after {timeout}s:\n{self.output()[-3000:]}")

    def stop(self) -> str:
        """Stop the server and every process it started; return what it printed.

        BentoML starts its workers in a session of their own, so the process group is
        not enough: the children are collected first and killed if they outlive it.
        """
        import psutil

        if self.proc.poll() is None:
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            _, alive = psutil.wait_procs(children, timeout=5)
            for child in alive:
                child.kill()
        return self.output()


@contextmanager
def serving(
    target: str, cwd: str | Path | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Serve ``target`` (a bento tag or ``module:Service``) for the ``with`` block.

    Yields the server's URL; the server is stopped and its log removed on exit.
    """
    server = Server(target, cwd, env)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)
