"""How each database family is opened and written: ``SINKS``, a registry of ``Sink``s.

SQLite, PostgreSQL, and a generic one for any other SQLAlchemy URL: how each is opened,
how a driver-level write transaction begins, how rows are inserted idempotently (keyed by
request id, and row for review items), and what upkeep runs beside the service (SQLite:
WAL checkpoints in a background thread, which also runs the audit log's own ``tick``).

The SQLite WAL stays bounded: ``journal_size_limit`` makes the first commit after a
complete checkpoint cut the file back to ``WAL_LIMIT``, and when a checkpoint cannot
complete (a 3 MB request every few milliseconds, readers holding old snapshots) and the
file has grown past ``WAL_LIMIT`` anyway, the thread runs a TRUNCATE checkpoint, which
waits for readers (writers wait at most the busy timeout meanwhile). Unbounded, a served
WAL reached 338 MB (issue 13).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from nb2prod.core.jsontext import dumps
from nb2prod.core.settings import ENV_AUDIT_URL
from nb2prod.runtime.audit.errors import AuditError, describe
from nb2prod.runtime.audit.layout import KEY
from nb2prod.runtime.audit.watch import FileWatch

log = logging.getLogger("nb2prod")
CHECKPOINT_S = 0.5  # SQLite: how often the audit log's WAL is checkpointed
WAL_LIMIT = 64 * 1024 * 1024  # SQLite: the WAL file is cut back to this size (bytes)
# One checkpoint at a time in this process: SQLite answers a second checkpointer BUSY at
# once, without its busy handler, so a commit's TRUNCATE lost to the upkeep thread's
# PASSIVE and the WAL grew on (CI: 34 MB against a bound of 32)
CHECKPOINTS = threading.Lock()
TRUNCATE_TRIES = 5  # another process's checkpoint can still hold the lock: a few more goes


class Sink:
    """Any SQLAlchemy database; subclasses override what their family does better."""

    name = "*"
    upsert: Any = None  # the dialect's insert() with ON CONFLICT, where there is one

    def engine(self, url: sa.URL, *, timeout: float, synchronous: str) -> sa.Engine:
        """A pooled engine; connections are checked before use (the server may restart)."""
        return sa.create_engine(url, json_serializer=dumps, pool_pre_ping=True)

    def create(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        """Create missing tables; another worker process racing us to it is no error."""
        try:
            metadata.create_all(engine)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            metadata.create_all(engine)

    def begin_driver(self, cursor: Any) -> None:
        """Start a write transaction on a driver cursor (DBAPI drivers begin implicitly)."""

    def maintain(self, engine: sa.Engine, tick: Callable[[], None]) -> Callable[[], None]:
        """Start this family's background upkeep for ``engine``, calling ``tick`` every
        round if it runs a thread; returns what stops it."""
        return lambda: None

    def watch(self, url: sa.URL) -> FileWatch | None:
        """What tells whether the database is still the one at its path (files only)."""
        return None

    def insert_new(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict], key: tuple[str, ...] = KEY
    ) -> None:
        """Insert the rows whose ``key`` columns are not stored yet: a replay is a no-op."""
        if not rows:
            return
        if self.upsert is not None:
            conn.execute(self.upsert(table).on_conflict_do_nothing(index_elements=key), rows)
            return
        have = set(
            conn.execute(
                sa.select(*(table.c[k] for k in key)).where(
                    table.c.request_id.in_({r["request_id"] for r in rows})
                )
            ).tuples()
        )
        new = [r for r in rows if tuple(r[k] for k in key) not in have]
        if new:
            conn.execute(table.insert(), new)

    def fix(self, url: sa.URL) -> str:
        """How to make the database reachable, for error messages."""
        return (
            f"start the database at {url.host}:{url.port or 'its default port'} or "
            f"correct the URL (argument or ${ENV_AUDIT_URL})"
        )


class SQLiteSink(Sink):
    """A local file in WAL mode, shared by threads and worker processes."""

    name = "sqlite"
    upsert = staticmethod(sqlite.insert)

    def engine(self, url: sa.URL, *, timeout: float, synchronous: str) -> sa.Engine:
        """WAL, ``synchronous`` FULL or NORMAL, a busy timeout, and our own ``BEGIN``."""
        if synchronous not in ("FULL", "NORMAL"):
            raise AuditError(
                f"sqlite_synchronous={synchronous!r} is not durable enough",
                where=url.render_as_string(),
                fix="use 'FULL' or 'NORMAL'",
            )
        engine = sa.create_engine(
            url, json_serializer=dumps, connect_args={"timeout": timeout}
        )  # the busy timeout

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None  # the driver must not BEGIN for us: see below
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")
            # Checkpoints run in the background (``maintain``), not inside the commit of
            # whichever request crosses 1,000 WAL pages: that request paid ~25 ms.
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")
            dbapi_conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # A deferred transaction that reads, then writes, fails at once with
            # SQLITE_BUSY if another process wrote meanwhile; IMMEDIATE waits instead.
            readonly = conn.get_execution_options().get("nb2prod_readonly")
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine

    def begin_driver(self, cursor: Any) -> None:
        """``BEGIN IMMEDIATE``: the driver does not begin for us (see ``engine``)."""
        cursor.execute("BEGIN IMMEDIATE")

    def maintain(self, engine: sa.Engine, tick: Callable[[], None]) -> Callable[[], None]:
        """Checkpoint the WAL every ``CHECKPOINT_S`` seconds in a daemon thread (commits no
        longer do) and call ``tick``; the returned stop() joins it and checkpoints once more."""
        stop, interval = threading.Event(), CHECKPOINT_S
        wal = Path(f"{engine.url.database}-wal")

        def checkpoint() -> None:
            try:
                raw = engine.raw_connection()
                try:  # PASSIVE: copies what it can without waiting for, or blocking, anyone
                    cursor = raw.cursor()
                    with CHECKPOINTS:
                        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if file_size(wal) > WAL_LIMIT:  # PASSIVE cannot keep up: wait for readers
                        truncate_wal(cursor)
                finally:
                    raw.close()
            except Exception as exc:  # noqa: BLE001 - busy or away: the next round retries
                log.debug("audit WAL checkpoint skipped: %s", describe(exc))

        def run() -> None:
            while not stop.wait(interval):
                checkpoint()
                try:
                    tick()
                except Exception:  # the thread must outlive any failure
                    log.exception("audit log upkeep failed; it runs again in %gs", interval)

        thread = threading.Thread(target=run, name="nb2prod-audit-checkpoint", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            thread.join(timeout=10)
            checkpoint()

        return stopper

    def watch(self, url: sa.URL) -> FileWatch | None:
        """A file database's ``FileWatch`` (none for ``:memory:``)."""
        name = url.database or ""
        return FileWatch(Path(name).resolve()) if name and name != ":memory:" else None

    def fix(self, url: sa.URL) -> str:
        """A missing directory or permissions are what usually go wrong with a file."""
        folder = Path(url.database or ".").resolve().parent
        return (
            f"make sure the directory {folder} exists and this process can write there, "
            f"or choose another path (argument or ${ENV_AUDIT_URL})"
        )


def truncate_wal(cursor: Any) -> bool:
    """``wal_checkpoint(TRUNCATE)`` until it completes (a few tries); whether it did.
    It waits for readers and writers up to the busy timeout; a checkpoint running in
    another process makes it return busy at once, hence the short waits between tries."""
    for attempt in range(TRUNCATE_TRIES):
        with CHECKPOINTS:
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return True
        time.sleep(0.005 * (attempt + 1))
    return False


def file_size(path: Path) -> int:
    """The size of a file in bytes; 0 when it is not there."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class PostgresSink(Sink):
    """PostgreSQL through psycopg 3, with a connect timeout so an outage fails fast."""

    name = "postgresql"

    @staticmethod
    def upsert(table: sa.Table) -> Any:
        """PostgreSQL's ``INSERT … ON CONFLICT``; its dialect is imported only where one
        is used (~20 ms of every process's start otherwise)."""
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)

    def engine(self, url: sa.URL, *, timeout: float, synchronous: str) -> sa.Engine:
        """A larger pool (BentoML's threadpool); ``postgresql://`` means psycopg 3."""
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return sa.create_engine(
            url,
            json_serializer=dumps,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": max(1, round(timeout))},
        )


class SinkRegistry:
    """Sinks by SQLAlchemy backend name; other backends get the generic ``Sink``."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}

    def register(self, sink: Sink) -> None:
        """Add ``sink`` under ``sink.name``, replacing any earlier one."""
        self._sinks[sink.name] = sink

    def get(self, backend: str) -> Sink:
        """The sink for ``backend`` (``"sqlite"``, ``"postgresql"``…), else the generic one."""
        return self._sinks.get(backend, self._sinks["*"])


SINKS = SinkRegistry()
for _sink in (Sink(), SQLiteSink(), PostgresSink()):
    SINKS.register(_sink)
