"""A database outage must not become a service outage (issue 13, item 2).

A worker restarted while the database is away used to refuse to start ("cannot flush the
audit spool ... attempt to write a readonly database"). With ``start_on_spool`` (what the
service uses) it starts on the spool when the database was reached before, and flushes
when it returns; only a database never reached stops the start. Outages are real: the
``db`` fixture's (SQLite's write lock held by another connection, PostgreSQL's proxy
cut), and a SQLite file made read-only with ``chattr +i`` (root ignores chmod).
"""

from __future__ import annotations

import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from audit_db import answer, rid

from nb2prod.runtime.audit import AuditError, AuditLog


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` immutable (``chattr +i``): SQLite says "attempt to write a readonly
    database", as for the issue's read-only file. Skips where chattr cannot."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot make {path} read-only here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_database_never_reached_still_stops_the_start(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spool = tmp_path / "spool.jsonl"
    with pytest.raises(AuditError, match="cannot open the audit database") as err:
        AuditLog.open(
            f"postgresql+psycopg://u@127.0.0.1:{port}/audit",
            model_version="demo:v1",
            spool_path=spool,
            timeout=1,
            start_on_spool=True,
        )
    assert f"127.0.0.1:{port}" in err.value.fix
    assert not spool.exists()  # nothing says it was ever reached


def test_a_restart_during_an_outage_starts_on_the_spool_and_flushes_later(db):
    first = db.open(start_on_spool=True)  # reached: the mark is written in the model's home
    assert not db.spool.exists()  # and nothing in the working directory
    before = rid()
    first.record(before, [{"x": 0}], [answer()], latency_ms=1)
    with db.down():
        # a worker restarted in the outage, the spool still empty: the mark lets it start
        empty = db.open(start_on_spool=True)
        spooled = rid()
        assert empty.record(spooled, [{"x": 1}], [answer()], latency_ms=1).stored == "spool"
        # it dies too; the next one finds a non-empty spool and still no database
        restarted = db.open(start_on_spool=True)
        during = [rid() for _ in range(3)]
        for r in during:
            assert restarted.record(r, [{"x": 2}], [answer()], latency_ms=1).stored == "spool"
        assert restarted.status()["spooled"] == 4 and restarted.status()["last_error"]
        with pytest.raises(AuditError):  # without the flag: refused, as before
            db.open()
    assert restarted.flush() == 4
    assert sorted(db.request_ids()) == sorted([before, spooled, *during])  # each once


def test_a_read_only_sqlite_file_with_a_leftover_spool_starts_and_flushes(tmp_path):
    path, spool = tmp_path / "audit.db", tmp_path / "spool.jsonl"

    def open_log() -> AuditLog:
        return AuditLog.open(
            path,
            model_version="demo:v1",
            spool_path=spool,
            flush_interval=None,
            start_on_spool=True,
            timeout=0.3,
        )

    first = open_log()
    first.record(rid(), [{"x": 0}], [answer()], latency_ms=1)
    first.close()
    acknowledged = []
    with read_only(path):
        worker = open_log()
        acknowledged.append(worker.record(rid(), [{"x": 1}], [answer()], latency_ms=1))
        # SIGKILL'd: no close; the next worker finds the spool non-empty and the file
        # read-only, which stopped it before ("cannot flush the audit spool")
        again = open_log()
        acknowledged += [
            again.record(rid(), [{"x": 2}], [answer()], latency_ms=1) for _ in range(5)
        ]
        assert {a.stored for a in acknowledged} == {"spool"}
    assert again.flush() == 6
    stored = [
        r
        for (r,) in __import__("sqlite3")
        .connect(path)
        .execute("SELECT request_id FROM nb2prod_audit")
    ]
    assert set(a.request_id for a in acknowledged) <= set(stored) and len(stored) == 7
    for log in (worker, again):
        log.close()


def test_a_spool_that_cannot_be_created_is_said_at_start(tmp_path, caplog):
    spool = tmp_path / "no-such-dir" / "spool.jsonl"
    log = AuditLog.open(
        tmp_path / "audit.db",
        model_version="demo:v1",
        spool_path=spool,
        flush_interval=None,
        start_on_spool=True,
    )
    assert any(
        "cannot create the audit spool" in r.getMessage()
        and "NB2PROD_AUDIT_SPOOL" in r.getMessage()
        for r in caplog.records
    )
    assert log.record(rid(), [{"x": 1}], [answer()], latency_ms=1).stored == "database"
    log.close()


def _locked_error(tmp_path: Path) -> Exception:
    """A real "database is locked", as SQLAlchemy raises it: a write refused while
    another connection holds SQLite's write lock."""
    import sqlite3

    import sqlalchemy as sa

    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
    except sa.exc.OperationalError as exc:
        return exc
    finally:
        holder.close()
        engine.dispose()
    raise AssertionError("the write was not refused")


def test_a_database_another_process_holds_for_a_moment_is_waited_for(tmp_path, monkeypatch):
    """Two replicas starting together on one new SQLite file: SQLite can refuse one at
    once ("database is locked", whatever the busy timeout). That is contention, not an
    unreachable database: open tries again, within its timeout."""
    from nb2prod.runtime.audit.database import Database

    refusal, real, calls = _locked_error(tmp_path), Database.prepare, []

    def busy_twice(self):
        calls.append(1)
        if len(calls) <= 2:
            raise refusal
        return real(self)

    monkeypatch.setattr(Database, "prepare", busy_twice)
    log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}", model_version="m:v1", timeout=2)
    try:
        assert len(calls) == 3
        assert log.record(rid(), [{"x": 1.0}], [answer()], latency_ms=1.0).stored == "database"
    finally:
        log.close()


def test_another_database_error_at_start_is_not_retried(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from nb2prod.runtime.audit.database import Database

    calls = []

    def broken(self):
        calls.append(1)
        raise sa.exc.OperationalError("SELECT 1", None, Exception("disk I/O error"))

    monkeypatch.setattr(Database, "prepare", broken)
    with pytest.raises(AuditError, match="disk I/O error"):
        AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}", model_version="m:v1", timeout=2)
    assert calls == [1]
