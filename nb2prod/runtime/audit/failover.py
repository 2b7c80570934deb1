"""Delivery of audit records: to the database, or to the local ``Spool`` while it is away.

``Failover`` tries the database first; an error the caller calls *unreachable* sends the
entry to the spool instead, and a daemon thread moves spooled entries back, exactly
once, when the database answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from nb2prod.runtime.audit.errors import AuditUnavailable, SpoolFullError, describe
from nb2prod.runtime.audit.spool import Spool

log = logging.getLogger("nb2prod")

MAX_BACKOFF = 30.0


class Refusals:
    """The log of records refused (503) while neither the database nor the spool can keep
    them: the first refusal of a run is one error line, the next ones are counted, with a
    line every ``NB2PROD_LOG_SUMMARY_S`` while they go on and one when a record is kept
    again. Logged per request, an outage under load wrote an error line per request."""

    def __init__(
        self, every: Callable[[], float] | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.every, self.clock = every or _summary_every, clock
        self.active = False  # read without the lock on every kept record: cheap when False
        self._count, self._since = 0, 0.0
        self._lock = threading.Lock()

    def refused(self, exc: AuditUnavailable) -> None:
        """One more record refused with ``exc``."""
        with self._lock:
            first, self.active = not self.active, True
            total = self._count = 1 if first else self._count + 1
            due = not first and self.clock() - self._since >= self.every()
            if first or due:
                self._since = self.clock()
        if first:
            log.error("%s (refusing requests with 503; the next refusals are counted)", exc)
        elif due:
            log.error("audit log: %d request(s) refused so far in this outage: %s", total, exc.what)

    def kept(self) -> None:
        """A record was kept (database or spool): ends a run of refusals, saying how many."""
        if not self.active:
            return
        with self._lock:
            if not self.active:
                return
            total, self.active, self._count = self._count, False, 0
        log.warning("audit log: records are kept again, after %d request(s) refused", total)


def _summary_every() -> float:
    from nb2prod.core import settings

    return settings.current().log_summary_s


class Failover:
    """Writes entries to the database, or to the spool while it is away; moves them back.

    ``store(entries, replay)`` writes entries in one transaction; with ``replay=True`` it
    must skip those already stored (what makes flushing exactly-once). ``unreachable``
    exceptions mean the database is away; any other is a bug and propagates. After a
    failure, writes go straight to the spool for a while (0.5 s, doubling to 30 s), so an
    outage costs a request one fsync'd append, not a connection timeout. With
    ``interval`` set, a daemon thread flushes that often while the spool has entries.
    """

    def __init__(
        self,
        spool: Spool,
        store: Callable[[list[Any], bool], None],
        *,
        unreachable: tuple[type[BaseException], ...],
        where: str,
        interval: float | None = 1.0,
    ):
        self.spool, self.store, self.unreachable, self.where = spool, store, unreachable, where
        self.interval = interval
        self.last_error: str | None = None
        self._delay = 0.0
        self._retry_at = 0.0  # time.monotonic() before which the database is not tried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.refusals = Refusals()

    @property
    def waiting(self) -> bool:
        """True while the last failure is too recent to try the database again."""
        return time.monotonic() < self._retry_at

    def write(self, entry: Any) -> str:
        """Store ``entry``: ``"database"`` when committed, ``"spool"`` when fsync'd locally.

        Raises ``AuditUnavailable`` when the database is away and the spool cannot take it.
        """
        why = self.last_error  # read once: other threads may succeed meanwhile
        if not self.waiting:
            try:
                self.store([entry], False)
                self._succeeded()
                self.refusals.kept()
                return "database"
            except self.unreachable as exc:
                why = self._failed(exc)
        try:
            self.spool.append(entry)
        except (SpoolFullError, OSError) as exc:
            refused = AuditUnavailable(
                f"the audit database is unreachable ({why}) and the local spool "
                f"{self.spool.path} cannot keep the record: {getattr(exc, 'what', exc)}",
                where=self.where,
                fix="restore the audit database; spooled records move there on their own "
                "and requests are answered again",
            )
            self.refusals.refused(refused)
            raise refused from None
        self._start()
        self.refusals.kept()
        return "spool"

    def flush(self) -> int:
        """Move spooled entries into the database, exactly once; returns how many moved.

        Raises ``AuditUnavailable`` while the database is still away (the spool stays).
        """
        try:
            moved = self.spool.drain(lambda entries: self.store(entries, True))
        except self.unreachable as exc:
            raise AuditUnavailable(
                f"cannot flush the audit spool {self.spool.path}: {self._failed(exc)}",
                where=self.where,
                fix="restore the audit database",
            ) from None
        self._succeeded()
        if moved:
            log.warning("audit database %s is back: %d spooled entries stored", self.where, moved)
        return moved

    def outage(self, exc: BaseException) -> None:
        """The database is away (found at start): spool from now on, flush when it answers."""
        self._failed(exc)
        self.start()

    def start(self) -> None:
        """Run the background flusher (if ``interval`` is set) until ``close()``."""
        self._start()

    def close(self) -> None:
        """Stop the flusher and try a last flush; the spool file keeps what fails."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if len(self.spool):
                self.flush()
        except AuditUnavailable as exc:
            log.warning("%s", exc)
        self.spool.close()

    def _failed(self, exc: BaseException) -> str:
        with self._lock:
            if not self._delay:  # once per outage, not once per request
                log.warning(
                    "audit database %s unreachable (%s); spooling to %s until it answers",
                    self.where,
                    describe(exc),
                    self.spool.path,
                )
            self._delay = min(MAX_BACKOFF, self._delay * 2 or 0.5)
            self._retry_at = time.monotonic() + self._delay
            self.last_error = describe(exc)
            return self.last_error

    def _succeeded(self) -> None:
        if self._delay:
            with self._lock:
                self._delay, self._retry_at, self.last_error = 0.0, 0.0, None

    def _start(self) -> None:
        with self._lock:
            if self.interval is not None and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="nb2prod-audit-flush"
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.waiting or not len(self.spool):
                continue
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                log.warning("audit spool %s not flushed yet: %s", self.spool.path, exc)
