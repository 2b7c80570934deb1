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

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, and not handed out before.

    The kernel may offer a port again as soon as the probing socket closes, so two
    servers started back to back, before either binds, could be given the same one.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Server:
    """One ``bentoml serve TARGET`` process group on 127.0.0.1.

    A port chosen here can still be taken by another process before the server binds
    it (a client's outgoing connection draws from the same range); the server is then
    started again on another port, so ``url`` is final once ``wait_ready`` returns.
    """

    bind_attempts = 3

    def __init__(
        self,
        target: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log: str | Path | None = None,
    ):
        self.target, self.cwd, self.own_port = target, cwd, port is None
        self.env = {**(env or os.environ), "BENTOML_DO_NOT_TRACK": "true"}
        self.log = (
            Path(log) if log else Path(tempfile.mkstemp(prefix="bentoml-serve-", suffix=".log")[1])
        )
        self.attempts = 0
        self._start(port or free_port())

    def _start(self, port: int) -> None:
        self.port, self.attempts = port, self.attempts + 1
        self.url = f"http://127.0.0.1:{self.port}"
        # A second attempt appends: what the first printed says why it was made.
        with open(self.log, "wb" if self.attempts == 1 else "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bentoml",
                    "serve",
                    self.target,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=self.cwd,
                env=self.env,
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
                if self._lost_its_port():
                    self._start(free_port())
                    continue
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"{self.url} not ready after {timeout}s:\n{self.output()[-3000:]}")

    def _lost_its_port(self) -> bool:
        return (
            self.own_port
            and self.attempts < self.bind_attempts
            and f"Could not bind 127.0.0.1:{self.port}" in self.output()
        )

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
