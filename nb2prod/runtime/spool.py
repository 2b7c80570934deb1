"""Delivery of audit records: to the database (a ``sinks.Sink``), or to a local ``Spool``.

``Failover`` writes to the database and, while it is unreachable, appends to the ``Spool``: a bounded JSONL file, one line per request, fsync'd before the
write returns, so an acknowledged record survives a crash of the process or the machine.
A background thread later hands the lines to the database and empties the file only after
that commit: a crash in between replays lines the idempotent insert skips — exactly once.
Threads and worker processes may share a spool (a thread lock plus ``flock``). When an
append would cross ``max_bytes`` or ``max_entries``, nothing is written and
``AuditUnavailable`` tells the service to answer 503 rather than lose an acknowledged record.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from nb2prod.core.errors import Nb2prodError, Unavailable
from nb2prod.core.jsonify import dumps

log = logging.getLogger("nb2prod")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 100_000
MAX_BACKOFF = 30.0
KEY = ("request_id", "row")
URL_ENV = "NB2PROD_AUDIT_URL"


class AuditError(Nb2prodError):
    """The audit log cannot be opened, or is used wrongly: at start-up, refuse to start."""


class AuditUnavailable(AuditError, Unavailable):
    """The audit database is away and the record cannot be kept: the service answers 503."""


class SpoolFullError(AuditUnavailable):
    """The spool holds as much as it may; nothing more can be kept locally."""


class Spool:
    """An fsync'd JSONL file of pending entries, bounded by ``max_bytes`` and ``max_entries``.

    An entry is any JSON-ready value (the audit log spools one dict per request). The file
    is created, mode 0600, on the first append.
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES):
        if max_bytes <= 0 or max_entries <= 0:
            raise AuditError(f"spool limits must be positive, not {max_bytes} bytes and "
                             f"{max_entries} records", where=str(path),
                             fix="pass positive spool_max_bytes and spool_max_records")
        self.path, self.max_bytes, self.max_entries = Path(path), max_bytes, max_entries
        self._lock = threading.Lock()  # flock does not exclude threads sharing one descriptor
        self._fd: int | None = None
        self._seen: tuple[int, int] = (-1, -1)  # (inode, size) when ``_count`` was taken
        self._count = 0

    def __len__(self) -> int:
        """Entries waiting in the spool (counts another process's entries too)."""
        if not self.path.exists():
            return 0
        with self._locked() as fd:
            return self._entries(fd)

    def append(self, entry: Any) -> None:
        """Add one entry durably (written and fsync'd), or raise ``SpoolFullError``."""
        line = dumps(entry).encode() + b"\n"
        with self._locked() as fd:
            size, count = os.fstat(fd).st_size, self._entries(fd)
            if count + 1 > self.max_entries or size + len(line) + 1 > self.max_bytes:
                raise SpoolFullError(
                    f"the local audit spool is full ({count} request(s), {size} bytes; "
                    f"limits {self.max_entries} request(s), {self.max_bytes} bytes)",
                    where=str(self.path),
                    fix="bring the audit database back (spooled records then move there "
                        "on their own), or raise spool_max_bytes / spool_max_records")
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A crash tore the last write; end that fragment so this entry stays whole.
                line = b"\n" + line
            if os.write(fd, line) != len(line):
                raise OSError(f"short write to {self.path} (disk full?)")
            os.fsync(fd)
            self._count += 1
            self._seen = (os.fstat(fd).st_ino, size + len(line))

    def drain(self, consume: Callable[[list[Any]], None]) -> int:
        """Pass every spooled entry to ``consume``; empty the spool once it returns.

        Returns the number of entries consumed. If ``consume`` raises, the spool is left
        as it was and the exception propagates. Unreadable lines (a write torn by a crash,
        never acknowledged) are logged and dropped.
        """
        if not self.path.exists():
            return 0
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            if size == 0:
                return 0
            entries = list(_parse(os.pread(fd, size, 0), self.path))
            if entries:
                consume(entries)
            os.ftruncate(fd, 0)
            os.fsync(fd)
            self._count, self._seen = 0, (os.fstat(fd).st_ino, 0)
            return len(entries)

    def close(self) -> None:
        """Close the file descriptor (the file and its entries stay)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """The open descriptor, held exclusively against other threads and processes."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            if created:  # the new directory entry must survive a crash too
                folder = os.open(self.path.parent, os.O_RDONLY)
                os.fsync(folder)
                os.close(folder)
        return self._fd

    def _entries(self, fd: int) -> int:
        """Entries in the file; recounted only when another process changed it."""
        stat = os.fstat(fd)
        if (stat.st_ino, stat.st_size) != self._seen:
            data = os.pread(fd, stat.st_size, 0)
            self._count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            self._seen = (stat.st_ino, stat.st_size)
        return self._count


class Failover:
    """Writes entries to the database, or to the spool while it is away; moves them back.

    ``store(entries, replay)`` writes entries in one transaction; with ``replay=True`` it
    must skip those already stored (what makes flushing exactly-once). ``unreachable``
    exceptions mean the database is away; any other is a bug and propagates. After a
    failure, writes go straight to the spool for a while (0.5 s, doubling to 30 s), so an
    outage costs a request one fsync'd append, not a connection timeout. With
    ``interval`` set, a daemon thread flushes that often while the spool has entries.
    """

    def __init__(self, spool: Spool, store: Callable[[list[Any], bool], None], *,
                 unreachable: tuple[type[BaseException], ...], where: str,
                 interval: float | None = 1.0):
        self.spool, self.store, self.unreachable, self.where = spool, store, unreachable, where
        self.interval = interval
        self.last_error: str | None = None
        self._delay = 0.0
        self._retry_at = 0.0  # time.monotonic() before which the database is not tried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

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
                return "database"
            except self.unreachable as exc:
                why = self._failed(exc)
        try:
            self.spool.append(entry)
        except (SpoolFullError, OSError) as exc:
            raise AuditUnavailable(
                f"the audit database is unreachable ({why}) and the local spool "
                f"{self.spool.path} cannot keep the record: {getattr(exc, 'what', exc)}",
                where=self.where,
                fix="restore the audit database; spooled records move there on their own "
                    "and requests are answered again") from None
        self._start()
        return "spool"

    def flush(self) -> int:
        """Move spooled entries into the database, exactly once; returns how many moved.

        Raises ``AuditUnavailable`` while the database is still away (the spool stays).
        """
        try:
            moved = self.spool.drain(lambda entries: self.store(entries, True))
        except self.unreachable as exc:
            raise AuditUnavailable(f"cannot flush the audit spool {self.spool.path}: "
                                   f"{self._failed(exc)}", where=self.where,
                                   fix="restore the audit database") from None
        self._succeeded()
        if moved:
            log.warning("audit database %s is back: %d spooled entries stored", self.where, moved)
        return moved

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
                log.warning("audit database %s unreachable (%s); spooling to %s until it "
                            "answers", self.where, describe(exc), self.spool.path)
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
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="nb2prod-audit-flush")
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.waiting or not len(self.spool):
                continue
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                log.warning("audit spool %s not flushed yet: %s", self.spool.path, exc)


def describe(exc: BaseException) -> str:
    """A driver error's class and first line, e.g. ``OperationalError: connection refused``."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {(str(orig).strip().splitlines() or [''])[0]}"


def _parse(data: bytes, path: Path) -> Iterator[Any]:
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            log.warning("%s: line %d is not a whole JSON entry (a write torn by a crash, "
                        "never acknowledged); skipped", path, number)
