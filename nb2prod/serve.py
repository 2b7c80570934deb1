"""Start and stop ``bentoml serve`` on a free localhost port (demo, tests, benchmarks).

Servers bind to 127.0.0.1 only and run in their own process group, so stopping one
stops its workers too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(target: str, cwd: str | None = None) -> tuple[subprocess.Popen, str]:
    """``bentoml serve target`` in its own process group; returns (process, base URL)."""
    port = free_port()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", target, "--host",
                             "127.0.0.1", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 90) -> None:
    """Wait for ``/readyz``; raise ``RuntimeError`` with the server's output if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> str:
    """Stop the whole process group; return what the server printed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


@contextmanager
def serving(target: str, cwd: str | None = None) -> Iterator[str]:
    """Serve ``target`` (a bento tag or ``module:Service``) for the ``with`` block; yields its URL."""
    proc, url = start(target, cwd)
    try:
        wait_ready(proc, url)
        yield url
    finally:
        stop(proc)
