"""Stop a ``nb2prod.serve.Server`` with every process it started.

BentoML starts each service worker in a session of its own, so the worker is not in the
server's process group: ``os.killpg(server.proc.pid, ...)`` kills the arbiter and leaves
the worker running, still answering on the inherited socket, as an orphan. These helpers
take the whole tree, found through the parent links before anything is signalled.
"""

import os
import signal
from contextlib import suppress

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def kill_tree(server) -> None:
    """SIGKILL the server's process group and every descendant: a crash, not a shutdown."""
    procs = _tree(server.proc.pid)
    with suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    server.proc.wait(10)
    psutil.wait_procs(procs, timeout=10)


def stop_tree(server) -> str:
    """``server.stop()``, then SIGKILL whatever of its tree outlived it; its output."""
    procs = _tree(server.proc.pid)
    output = server.stop()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    return output
