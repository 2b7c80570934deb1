"""The database an ``AuditLog`` writes to, kept honest: ``Database``.

Tables are made and checked once (``prepare``), not per request; for SQLite, ``prepare``
also remembers which file the path leads to (``watch.FileWatch``), and ``check_file``
says, after each commit, whether the file written is still that one. When it is not
(the file or its directory removed, moved or replaced while serving: issue 13), the
write raises ``DatabaseMoved``, which the log treats as an outage (the record goes to
the spool), the loss is logged once, loudly, and the next write opens the path afresh on
new connections (the pool's old ones write to the file nobody reads).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nb2prod.runtime.audit import sinks
from nb2prod.runtime.audit.errors import DatabaseMoved
from nb2prod.runtime.audit.layout import FastInsert, Tables, check_layout
from nb2prod.runtime.audit.sinks import Sink, file_size

log = logging.getLogger("nb2prod")


WAL_BACKSTOP = 4  # times WAL_LIMIT: past it, a commit truncates the WAL itself


class Database:
    """One audit database: made ready once, and again after its SQLite file was lost."""

    def __init__(self, engine: sa.Engine, sink: Sink, tables: Tables, *, url: str, spool: Path):
        self.engine, self.sink, self.tables, self.url, self.spool = (
            engine,
            sink,
            tables,
            url,
            spool,
        )
        self.watch = sink.watch(engine.url)  # SQLite: is the open file still at its path?
        self.wal = self.watch.path.with_name(self.watch.path.name + "-wal") if self.watch else None
        self.ready = False  # tables made and checked (and the file remembered)
        self._lock = threading.Lock()
        self._inserts: dict[str, FastInsert] = {}

    @property
    def file(self) -> Path | None:
        """The SQLite file, or None for a database server."""
        return self.watch.path if self.watch else None

    def prepare(self) -> tuple[int, int] | None:
        """Make and check the tables the first time, or after the file was lost; returns
        the identity of the file written (SQLite; None for others), for ``check_file``.

        Raises the driver's error (``OperationalError``...) while the database is away,
        ``DatabaseMoved`` when a WAL is there without its database file, ``AuditError``
        for tables of another layout.
        """
        if not self.ready:
            with self._lock:
                if not self.ready:
                    self._open()
        return self.watch.identity if self.watch else None

    def prepare_at_start(self, seconds: float) -> None:
        """``prepare()``, tried again for up to ``seconds`` while SQLite says another
        process holds the file (SQLITE_BUSY). Two replicas starting together on one new
        file met that in CI, busy timeout or not: SQLite refuses at once a transaction
        that read and then writes when another process wrote in between. It is
        contention, not an unreachable database, so it must not stop ``bentoml serve``."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.prepare()
                return
            except sa.exc.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def check_file(self, identity: tuple[int, int] | None) -> None:
        """Raise ``DatabaseMoved`` if the SQLite file written (``identity``, from
        ``prepare`` before the write) is no longer the one at its path: then the write
        must not be acknowledged. One ``stat``: a few µs (``watch``)."""
        if self.watch is None:
            return
        why = self.watch.moved(identity)
        if why:
            self._lost(why, identity)
            raise DatabaseMoved(f"the audit database file {self.watch.path} was {why}")

    def insert(self, tables: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """New rows into their tables in one transaction, on a pooled driver connection:
        SQLAlchemy's ``Connection`` (events, transaction objects) cost twice the insert.
        Driver errors are raised as SQLAlchemy's (``OperationalError``, ``IntegrityError``,
        ...), and a connection the database dropped is discarded, as the engine would."""
        batches = []
        for name, rows in tables:
            if rows:
                if name not in self._inserts:  # rows of a table always carry the same keys
                    self._inserts[name] = FastInsert(
                        getattr(self.tables, name), self.engine.dialect, list(rows[0])
                    )
                batches.append((self._inserts[name], rows))
        dialect, raw = self.engine.dialect, None
        statement, params = "BEGIN", None
        try:
            raw = self.engine.raw_connection()  # pool checkout (and pre-ping, where set)
            cursor = raw.cursor()
            try:
                self.sink.begin_driver(cursor)
                for insert, rows in batches:
                    statement, params = insert.sql, insert.params(rows)
                    cursor.executemany(statement, params)
                statement, params = "COMMIT", None
                raw.commit()
                if self.wal is not None and file_size(self.wal) > WAL_BACKSTOP * sinks.WAL_LIMIT:
                    # the upkeep thread could not keep up (a busy process starves it):
                    # this commit waits for readers once, and the WAL starts again small
                    _quietly(lambda: sinks.truncate_wal(cursor))
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            dropped = raw is None or dialect.is_disconnect(exc, raw.dbapi_connection, None)
            if raw is not None:
                raw.invalidate(exc) if dropped else _quietly(raw.rollback)
            raise sa.exc.DBAPIError.instance(
                statement,
                params,
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=dropped,
                dialect=dialect,
            ) from exc
        finally:
            if raw is not None:
                raw.close()  # back to the pool (a no-op once invalidated)

    def failed(self) -> None:
        """A write failed as unreachable: SQLite, which opens a file it cannot write
        read-only and keeps the connection so, gets new connections for the next try
        (the pooled ones stayed read-only after the file was writable again)."""
        if self.watch is not None:
            self.engine.dispose()

    def notice_moved(self) -> None:
        """The maintenance thread's check (every ``sinks.CHECKPOINT_S``): an idle worker
        finds out too, and says so, before its next write."""
        if self.watch is not None and self.ready:
            identity = self.watch.identity
            why = self.watch.moved(identity)
            if why:
                self._lost(why, identity)

    def _open(self) -> None:
        watch = self.watch
        if watch is not None:
            self.engine.dispose()  # the pool's connections may hold a lost file
            wal = watch.path.with_name(watch.path.name + "-wal")
            if not watch.path.exists() and wal.exists():
                # a new database file would take this WAL, another file's pages, as its own
                raise DatabaseMoved(
                    f"{wal} is there without its database file {watch.path.name} "
                    "(moved without it?): put the database back or move the WAL away"
                )
        self.sink.create(self.engine, self.tables.metadata)
        check_layout(self.engine, self.tables.metadata, self.url)
        if watch is not None:
            watch.remember()
        self.ready = True

    def _lost(self, why: str, identity: tuple[int, int] | None) -> None:
        """The file ``identity`` is gone from its path: say so once, loudly; the next
        write opens the path again (records go to the spool, or get 503, until it works)."""
        with self._lock:
            if not self.ready or self.watch is None or self.watch.identity != identity:
                return  # noticed already, or opened again since
            self.ready = False
        log.error(
            "audit database file %s was %s while serving: nothing more is written to "
            "the file this worker had open, since nobody can read it. Records go to the "
            "spool %s (or are refused with 503 if it cannot take them) until a database "
            "can be opened at that path again; restore the file or its directory, or the "
            "next write creates a new database there",
            self.watch.path,
            why,
            self.spool,
        )


def _quietly(action: Any) -> None:
    """Run ``action``; a connection already broken may fail to roll back, which is fine."""
    try:
        action()
    except Exception:  # noqa: BLE001 - the original error is what gets reported
        pass


def _busy(exc: sa.exc.OperationalError) -> bool:
    """Whether SQLite answered SQLITE_BUSY ("database is locked")."""
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_BUSY") or "database is locked" in str(exc.orig)
