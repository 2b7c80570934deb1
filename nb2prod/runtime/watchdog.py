"""A BentoML worker whose arbiter is gone stops on its own, so its port is free again.

``bentoml serve`` is an arbiter (circus) that starts each service worker in a process
session of its own. ``kill -9`` of the arbiter or of its process group does not reach the
worker: it lives on as an orphan, still answering on the inherited socket, and the next
``bentoml serve`` on that port fails with "Address already in use".

The watchdog is a daemon thread that reads ``os.getppid()`` every half second (portable,
and a few microseconds a look). When the parent is no longer the arbiter the worker was
started by, it logs one line and sends itself SIGTERM: uvicorn closes the listening socket
at once (the port is free), finishes the requests it holds and exits. A worker that has not
exited ``grace_s`` later (a model call that never returns keeps the interpreter from
finishing) ends with ``os._exit``.

Linux's ``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the *thread* that started the
process ends, not the process, and it could not enforce the grace period either.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable

log = logging.getLogger("nb2prod")
POLL_S = 0.5
GRACE_S = 30.0  # BentoML's traffic timeout: no admitted request runs longer


def worker_index() -> int | None:
    """This process's index among its serve's workers (from 1), when it is a BentoML
    service worker (BentoML sets it before it imports the service); else None."""
    try:
        from bentoml._internal.context import server_context
    except ImportError:  # a BentoML without it: the watchdog is off, serving is not
        return None
    index = getattr(server_context, "worker_index", None)
    return index if isinstance(index, int) else None


def arbiter() -> int | None:
    """The pid of the BentoML arbiter that started this process, when it is a service
    worker; else None."""
    return None if worker_index() is None else os.getppid()


def _terminate() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class Watchdog:
    """Stops this process when ``os.getppid()`` is no longer ``parent``."""

    def __init__(
        self,
        parent: int,
        *,
        grace_s: float = GRACE_S,
        poll_s: float = POLL_S,
        stop: Callable[[], None] = _terminate,
    ):
        self.parent, self.grace_s, self.poll_s, self.stop = parent, grace_s, poll_s, stop
        self.thread = threading.Thread(target=self._watch, name="nb2prod-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        """Start watching; returns ``self``."""
        self.thread.start()
        return self

    def _watch(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(self.poll_s)
        log.warning(
            "nb2prod: the BentoML arbiter (pid %d) is gone; worker %d stops: no new "
            "connections, the requests it holds are answered, exit within %gs",
            self.parent,
            os.getpid(),
            self.grace_s,
        )
        self.stop()
        time.sleep(self.grace_s)
        log.warning("nb2prod: worker %d did not stop in %gs; exiting", os.getpid(), self.grace_s)
        logging.shutdown()
        os._exit(1)


def watch(parent: int | None) -> Watchdog | None:
    """Start a watchdog on ``parent`` (``arbiter()``'s answer; None: not a worker)."""
    return Watchdog(parent).start() if parent is not None else None
