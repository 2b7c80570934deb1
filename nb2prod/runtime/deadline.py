"""Run the model with a deadline, so a hanging call costs one request its model answer
and nothing more.

Python cannot kill a thread, so a call that overruns keeps its worker until it returns.
The pool is bounded; when every worker is held by a stuck call, new calls time out at
once instead of queueing behind them, so later requests still get fallback answers
within their deadline.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable


class DeadlineExceeded(Exception):
    """The call did not finish within its deadline (or no worker was free to start it)."""


class Deadline:
    """Calls functions in a bounded pool of worker threads, waiting at most ``seconds``."""

    def __init__(self, seconds: float, workers: int = 4):
        self.seconds = seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nb2prod-model")
        self._free = threading.BoundedSemaphore(workers)
        self._workers = workers
        self._turns: asyncio.Semaphore | None = None
        self._turns_loop: asyncio.AbstractEventLoop | None = None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or ``DeadlineExceeded`` after ``seconds``; exceptions propagate."""
        future = self._submit(fn, *args)
        try:
            return future.result(timeout=self.seconds)
        except FutureTimeout:
            raise DeadlineExceeded(f"the model did not answer within {self.seconds}s") from None

    async def acall(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``call`` awaited on the running event loop, which serves other requests while
        ``fn`` runs in its worker thread.

        Calls beyond the pool's size wait for a turn, in order, within their deadline
        (the loop starts requests faster than the model answers them); a call whose turn
        comes while every worker is held by an overrunning call times out at once, as in
        ``call``. Uncontended, no task is created: one future and one timer."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        turns = self._turns_for(loop)
        if turns.locked():
            try:
                await asyncio.wait_for(turns.acquire(), self.seconds)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(
                    f"the model did not answer within {self.seconds}s (waited for a turn)"
                ) from None
        else:
            await turns.acquire()
        try:
            waiting = asyncio.wrap_future(self._submit(fn, *args), loop=loop)
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                waiting.cancel()  # the thread runs on; its answer is dropped

            timer = loop.call_at(started + self.seconds, expire)
            try:
                return await waiting
            except asyncio.CancelledError:
                if expired:
                    raise DeadlineExceeded(
                        f"the model did not answer within {self.seconds}s"
                    ) from None
                raise
            finally:
                timer.cancel()
        finally:
            turns.release()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` started on a free worker, which it frees when it returns;
        ``DeadlineExceeded`` at once when every worker is held (by overrunning calls)."""
        if not self._free.acquire(blocking=False):
            raise DeadlineExceeded("every model worker is still busy with an overrunning call")

        def run() -> Any:
            try:
                return fn(*args)
            finally:
                self._free.release()

        return self._pool.submit(run)

    def _turns_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        """The event loop's turns at the pool (one semaphore per loop: asyncio's belong
        to the loop that first waits on them)."""
        if self._turns is None or self._turns_loop is not loop:
            self._turns, self._turns_loop = asyncio.Semaphore(self._workers), loop
        return self._turns
