"""The audit database a test writes to: SQLite (WAL) or PostgreSQL, and a way to cut it.

Shared by test_audit.py, test_feedback.py and test_review.py; the ``db`` fixture in
conftest.py hands each test one ``Db``. PostgreSQL runs at ``$NB2PROD_TEST_PG_URL``
(default 127.0.0.1:5432, database ``test``). Outages are real: PostgreSQL is reached
through a local TCP proxy the test cuts (connections dropped, port refusing), SQLite is
locked by another connection for longer than the busy timeout.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from nb2prod.runtime.audit import AuditLog
from nb2prod.runtime.audit.layout import make_tables

PG_URL = os.environ.get("NB2PROD_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SALT = "test-salt-0123456789abcdef"


def pg_answers() -> bool:
    """True when something accepts TCP connections at the PostgreSQL URL's host:port."""
    url = sa.make_url(PG_URL)
    try:
        socket.create_connection((url.host, url.port or 5432), timeout=1).close()
        return True
    except OSError:
        return False


class Proxy:
    """A TCP forwarder to PostgreSQL that a test can cut (a real outage) and restore."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.port = 0
        self._socks: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port) and forward every connection."""
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        server.settimeout(0.05)
        self.port, self._server = server.getsockname()[1], server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        """Drop every forwarded connection and stop listening: the port refuses."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for sock in self._socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._socks.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Db:
    """One test's database: where logs connect (``url``), how to verify, how to cut it."""

    def __init__(self, kind: str, tmp_path: Path):
        self.kind = kind
        self.prefix = f"t{uuid.uuid4().hex[:8]}_"
        self.tmp_path = tmp_path
        self.spool = tmp_path / "spool.jsonl"
        self.logs: list[AuditLog] = []
        if kind == "sqlite":
            self.path = tmp_path / "audit.db"
            self.url = self.direct = f"sqlite:///{self.path}"
        else:
            pg = sa.make_url(PG_URL)
            self.proxy = Proxy(pg.host, pg.port or 5432)
            self.direct = PG_URL
            self.url = pg.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
                hide_password=False)
        self.engine = sa.create_engine(self.direct)
        self.tables = make_tables(self.prefix)

    def open(self, **options: Any) -> AuditLog:
        """An ``AuditLog`` on this database; no background flusher unless asked."""
        # An outage of SQLite is a held write lock: each write then waits the whole busy
        # timeout, so a short one keeps the outage tests fast; writers in a healthy
        # database hold the lock for well under a millisecond.
        timeout = 0.3 if self.kind == "sqlite" else 1.0
        options = {"model_version": "demo:v1", "notebook_sha256": "ab" * 32,
                   "table_prefix": self.prefix, "spool_path": self.spool,
                   "flush_interval": None, "timeout": timeout, **options}
        log = AuditLog.open(self.url, **options)
        self.logs.append(log)
        return log

    def rows(self, table: str = "audit") -> list[dict[str, Any]]:
        """Every row of one of this test's tables, read over a fresh connection."""
        t = getattr(self.tables, table)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t))]

    def request_ids(self) -> list[str]:
        """Request ids in the audit table, one per stored request."""
        return [r["request_id"] for r in self.rows()]

    @contextmanager
    def down(self) -> Iterator[None]:
        """An outage: PostgreSQL's proxy cut, or SQLite's write lock held by another process."""
        if self.kind == "sqlite":
            locker = sqlite3.connect(self.path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                locker.execute("COMMIT")
                locker.close()
        else:
            self.proxy.stop()
            try:
                yield
            finally:
                self.proxy.start()

    def close(self) -> None:
        """Close the logs, then drop this test's tables whatever happened."""
        try:
            for log in self.logs:
                log.close()
        finally:
            self.tables.metadata.drop_all(self.engine)
            self.engine.dispose()
            if self.kind == "postgresql":
                self.proxy.stop()


def answer(prediction: Any = 1, **extra: Any) -> dict[str, Any]:
    """One Predictor row."""
    return {"prediction": prediction, "source": "model", "reason": None, "warnings": [],
            **extra}


def rid() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex
