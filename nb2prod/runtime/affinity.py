"""Keep a worker's event loop and its model threads on one CPU (``NB2PROD_CPU_PIN``).

Why: a request crosses threads twice. The event loop hands the model call to the
deadline's thread (``deadline.py``), and that thread's answer wakes the loop again. When
the two threads sit on different CPUs, each hand-off has to wake an idle CPU. On the
2-core virtual machines measured here that cost 0.1-0.2 ms per hand-off. Pinning the
two threads to one CPU took about 15 % off a 1-row request's median and added about 20 %
to the throughput at 8 clients (bench/serve_overhead.py, ``no-cpu-pin``). On one CPU,
a hand-off is only a context switch.

What is pinned: the worker's main thread (the event loop) and the deadline's threads
(``nb2prod-model_*``), which the loop starts and which inherit its CPU. Other threads get
back every CPU the process may use. This covers the threads the model's libraries start
(OpenMP, BLAS, PyTorch), the thread a large request is decoded in, and nb2prod's
background threads. A sweep thread checks once every ``SWEEP_S``. It only widens a
thread whose CPU set is exactly the pinned one (what a thread started by a pinned one
inherits), so an affinity a library chose for its threads is left as it is.

Which CPU: each worker claims one, through a lock file per CPU in the temporary
directory, so the workers of one serve, and the serves of one machine that share that
directory, take different CPUs. The lock goes with the process, even after ``kill -9``.
When every CPU is claimed (more workers than CPUs), a worker stays unpinned. It also stays
unpinned when the process may use only one CPU, or when it is not a ``bentoml serve``
worker.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("nb2prod")
SWEEP_S = 1.0
HOT_PREFIX = "nb2prod-model"  # deadline.py's thread_name_prefix: kept on the loop's CPU


def claims_dir() -> Path:
    """Where the per-CPU lock files live: one directory per user, in the temp directory."""
    return Path(tempfile.gettempdir()) / f"nb2prod-cpu-{os.getuid()}"


def claim(cpus: list[int], first: int, where: Path) -> tuple[int, int] | None:
    """``(cpu, fd)``: the first CPU of ``cpus``, starting at index ``first``, whose lock
    file under ``where`` no other open file holds; None when every one is held. The lock
    lasts as long as ``fd`` stays open (the worker keeps it for its life)."""
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    for k in range(len(cpus)):
        cpu = cpus[(first + k) % len(cpus)]
        fd = os.open(where / f"{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return cpu, fd
    return None


class Pinning:
    """One worker's pinning: the loop and model threads on ``cpu``, all others on ``allowed``."""

    def __init__(self, cpu: int, allowed: set[int], sweep_s: float = SWEEP_S):
        self.cpu, self.allowed, self.sweep_s = cpu, allowed, sweep_s

    def start(self) -> None:
        """Pin the main thread (threads it starts from now on inherit its CPU) and start
        the sweep."""
        os.sched_setaffinity(threading.main_thread().native_id or 0, {self.cpu})
        self.sweep()
        # a daemon for the worker's life: it ends with the process
        threading.Thread(target=self._run, name="nb2prod-cpu-sweep", daemon=True).start()

    def hot(self) -> set[int]:
        """The threads that stay on ``cpu``: the main thread and the model's."""
        main = threading.main_thread()
        return {
            t.native_id
            for t in threading.enumerate()
            if t.native_id is not None and (t is main or t.name.startswith(HOT_PREFIX))
        }

    def sweep(self) -> None:
        """Give every thread that inherited the pinned CPU, and is not hot, all CPUs back;
        pin a hot thread that is not on it (one started in the instant between two sweeps
        and widened by the last one)."""
        hot, pinned = self.hot(), {self.cpu}
        for name in os.listdir("/proc/self/task"):
            tid = int(name)
            try:
                now = os.sched_getaffinity(tid)
                if tid in hot and now != pinned and now == self.allowed:
                    os.sched_setaffinity(tid, pinned)
                elif tid not in hot and now == pinned:
                    os.sched_setaffinity(tid, self.allowed)
            except OSError:  # the thread ended meanwhile
                continue

    def _run(self) -> None:
        while True:
            time.sleep(self.sweep_s)
            try:
                self.sweep()
            except Exception:  # the sweep must never stop serving
                log.exception("nb2prod: the CPU sweep failed; it runs again in %gs", self.sweep_s)


def pin(enabled: bool, worker_index: int | None) -> Pinning | None:
    """Pin this ``bentoml serve`` worker (``worker_index`` from 1) as the module docstring
    says, and say so in one line; None when it is left to the scheduler."""
    if not enabled or worker_index is None or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None
    cpus = sorted(allowed)
    try:
        got = claim(cpus, worker_index - 1, claims_dir())
    except OSError as exc:  # no writable temp directory: the worker index alone decides
        log.info("nb2prod: cannot claim a CPU in %s (%s); going by worker index", claims_dir(), exc)
        got = (cpus[(worker_index - 1) % len(cpus)], -1)
    if got is None:
        log.info(
            "nb2prod: worker %d is not pinned to a CPU: all %d are taken by other workers",
            worker_index,
            len(cpus),
        )
        return None
    pinning = Pinning(got[0], allowed)
    try:
        pinning.start()
    except OSError as exc:  # a sandbox that refuses it: serving goes on unpinned
        log.warning("nb2prod: cannot pin worker %d to CPU %d: %s", worker_index, got[0], exc)
        return None
    log.info(
        "nb2prod: worker %d keeps its event loop and model threads on CPU %d "
        "(NB2PROD_CPU_PIN=off leaves them to the scheduler)",
        worker_index,
        got[0],
    )
    return pinning
