"""The audit log on real databases: SQLite (WAL) and PostgreSQL, the same tests for both.

PostgreSQL runs at ``$NB2PROD_TEST_PG_URL`` (default 127.0.0.1:5432, database ``test``);
its variants skip, saying so, only when no server answers there. Every test gets its own
table prefix and drops its tables afterwards. Outages are real: PostgreSQL is reached
through a local TCP proxy the test cuts (connections dropped, port refusing), SQLite is
locked by another connection for longer than the busy timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_db import SALT, Db, answer, rid

from nb2prod.runtime.audit import AuditError, AuditLog, AuditUnavailable
from nb2prod.runtime.audit.layout import records_of, table

ROOT = Path(__file__).resolve().parent.parent


# -- the write path -----------------------------------------------------------------------------

def test_record_stores_the_request_as_one_row_with_its_context(db):
    log = db.open()
    request = rid()
    inputs = [{"x": 1.5, "city": "Oslo"}, {"x": float("nan"), "city": None}]
    answers = [answer({"label": 1, "probability": 0.9}),
               answer(0, source="fallback", reason="guardrail",
                      warnings=[{"check": "x_range", "msg": "row 1"}])]
    result = log.record(request, inputs, answers, latency_ms=12.5)
    assert (result.request_id, result.rows, result.stored) == (request, 2, "database")
    [stored] = db.rows()
    assert (stored["request_id"], stored["rows"]) == (request, 2)
    # inputs as a table (names once) and answers in row order; NaN is stored as null
    assert stored["input"] == {"columns": ["x", "city"], "rows": [[1.5, "Oslo"], [None, None]]}
    assert records_of(stored["input"]) == [{"x": 1.5, "city": "Oslo"}, {"x": None, "city": None}]
    assert stored["output"] == [
        {"prediction": {"label": 1, "probability": 0.9}, "source": "model", "reason": None,
         "warnings": []},
        {"prediction": 0, "source": "fallback", "reason": "guardrail",
         "warnings": [{"check": "x_range", "msg": "row 1"}]}]
    assert (stored["model"], stored["model_version"]) == ("demo", "demo:v1")
    assert (stored["notebook_sha256"], stored["latency_ms"]) == ("ab" * 32, 12.5)
    stamp = stored["created_at"]  # SQLite gives it back naive, PostgreSQL aware: UTC both
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    age = datetime.now(timezone.utc) - stamp
    assert timedelta(0) <= age < timedelta(minutes=1), "created_at is the current UTC time"


def test_a_request_is_one_row_written_in_one_transaction(db):
    log = db.open()
    checkouts: list[int] = []
    sa.event.listen(log._engine, "checkout", lambda *args: checkouts.append(1))
    log.record(rid(), [{"x": i} for i in range(100)], [answer()] * 100, latency_ms=1)
    assert len(checkouts) == 1  # one connection, one transaction
    [stored] = db.rows()
    assert stored["rows"] == 100 and stored["input"]["rows"] == [[i] for i in range(100)]
    # All or nothing: when a request's review row cannot be written, its audit row is not
    # kept either (SQLite reports the missing table as an outage and spools the request;
    # PostgreSQL as a programming error, raised).
    db.tables.review.drop(db.engine)
    request = rid()
    try:
        assert log.record(request, [{"x": 1}], [answer()], latency_ms=1,
                          review={0: "guardrail"}).stored == "spool"
    except sa.exc.ProgrammingError:
        assert db.kind == "postgresql"
    assert request not in db.request_ids()
    db.tables.review.create(db.engine)
    if db.kind == "sqlite":
        assert log.flush() == 1
        assert request in db.request_ids()
        assert [r["request_id"] for r in db.rows("review")] == [request]


def test_inputs_are_stored_as_a_table_and_read_back_as_records():
    same = [{"a": 1, "b": "x"}, {"b": "y", "a": 2}]  # key order may differ
    assert table(same) == {"columns": ["a", "b"], "rows": [(1, "x"), (2, "y")]}
    ragged = [{"a": 1}, {"a": 2, "b": None}, {"c": 3.5}]
    stored = table(ragged)
    assert stored["columns"] == ["a", "b", "c"]
    assert records_of(stored) == [{"a": 1, "b": None, "c": None}, {"a": 2, "b": None, "c": None},
                                  {"a": None, "b": None, "c": 3.5}]  # absent reads as null
    assert records_of(stored, [2]) == [{"a": None, "b": None, "c": 3.5}]
    assert table([]) == {"columns": [], "rows": []}


def test_a_table_of_another_layout_is_refused_at_open(db):
    with db.engine.begin() as conn:  # an earlier nb2prod's audit table: one row per row
        conn.exec_driver_sql(f"CREATE TABLE {db.prefix}audit (request_id VARCHAR(64), "
                             "row INTEGER, input TEXT)")
    with pytest.raises(AuditError, match="exists without column") as err:
        db.open()
    assert f"RENAME TO {db.prefix}audit_old" in err.value.fix


def test_a_request_id_is_recorded_once(db):
    log = db.open()
    request = rid()
    log.record(request, [{"x": 1}], [answer()], latency_ms=1)
    with pytest.raises(AuditError, match="already in the audit log"):
        log.record(request, [{"x": 2}], [answer()], latency_ms=1)
    assert db.request_ids() == [request]


def test_inputs_and_answers_must_pair_up(db):
    with pytest.raises(AuditError, match="2 input row.* but 1 answer"):
        db.open().record(rid(), [{"x": 1}, {"x": 2}], [answer()], latency_ms=1)


def test_sqlite_runs_in_wal_mode_with_normal_sync_unless_told_full(tmp_path, monkeypatch):
    monkeypatch.delenv("NB2PROD_AUDIT_SYNC", raising=False)

    def pragmas(**options: Any) -> tuple[str, int]:
        log = Db("sqlite", tmp_path).open(**options)
        with log._engine.connect() as conn:
            found = (conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                     conn.exec_driver_sql("PRAGMA synchronous").scalar())
        log.close()
        return found

    assert pragmas() == ("wal", 1)  # NORMAL: NB2PROD_AUDIT_SYNC's default, as served
    assert pragmas(sqlite_synchronous="FULL") == ("wal", 2)
    monkeypatch.setenv("NB2PROD_AUDIT_SYNC", "full")
    assert pragmas() == ("wal", 2)
    assert pragmas(sqlite_synchronous="NORMAL") == ("wal", 1)  # the argument wins
    with pytest.raises(AuditError, match="not durable enough"):
        pragmas(sqlite_synchronous="OFF")


def test_sqlite_checkpoints_in_the_background_so_the_wal_stays_bounded(tmp_path, monkeypatch):
    """Commits never checkpoint (a request crossing 1,000 WAL pages paid ~25 ms); the
    log's own thread does, and the WAL file stops growing."""
    from nb2prod.runtime.audit import sinks

    monkeypatch.setattr(sinks, "CHECKPOINT_S", 0.05)
    db = Db("sqlite", tmp_path)
    log = db.open()
    with log._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    wide = [{f"f{i}": i * 1.25 for i in range(30)}] * 100  # ~20 WAL pages a request
    wal = tmp_path / "audit.db-wal"
    sizes = []
    for i in range(600):
        log.record(rid(), wide, [answer()] * 100, latency_ms=1)
        if i % 100 == 99:
            time.sleep(0.2)  # a checkpoint round happens meanwhile
            sizes.append(wal.stat().st_size)
    unchecked = 600 * 20 * 4096  # what 600 requests' frames take without checkpoints
    assert max(sizes) < unchecked / 3, sizes
    log.close()
    assert len(db.request_ids()) == 600


def test_default_location_is_env_then_the_model_names_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NB2PROD_AUDIT_URL", raising=False)
    for version in ("demo:v1", "demo:v2"):  # every version (and bento) of a name: one database
        log = AuditLog.open(model_version=version)
        assert log.url == f"sqlite:///{tmp_path / 'home' / 'nb2prod' / 'demo' / 'audit.db'}"
        log.close()
    assert (tmp_path / "home" / "nb2prod" / "demo" / "audit.db").exists()
    assert list(tmp_path.glob("*.db")) == []  # nothing in the working directory
    monkeypatch.setenv("NB2PROD_AUDIT_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    AuditLog.open(model_version="demo:v1").close()
    assert (tmp_path / "from-env.db").exists()
    AuditLog.open(tmp_path / "plain-path.db", model_version="demo:v1").close()
    assert (tmp_path / "plain-path.db").exists()


def test_the_spool_is_where_nb2prod_audit_spool_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = Db("sqlite", tmp_path)
    try:
        monkeypatch.setenv("NB2PROD_AUDIT_SPOOL", str(tmp_path / "from-env.jsonl"))
        log = db.open(spool_path=None)
        with db.down():
            assert log.record(rid(), [{"x": 1}], [answer()], latency_ms=1).stored == "spool"
        assert len((tmp_path / "from-env.jsonl").read_text().splitlines()) == 1
        monkeypatch.delenv("NB2PROD_AUDIT_SPOOL")
        other = db.open(spool_path=None, table_prefix=db.prefix)
        with db.down():
            other.record(rid(), [{"x": 2}], [answer()], latency_ms=1)
        [default] = tmp_path.glob("nb2prod-audit-spool-*.jsonl")  # the working directory
        assert len(default.read_text().splitlines()) == 1
    finally:
        db.close()


# -- PII ------------------------------------------------------------------------------------------

def everything_stored(db: Db) -> str:
    """All the text the database holds for this test: raw file bytes or every table as text."""
    if db.kind == "sqlite":
        files = [p for p in db.tmp_path.iterdir() if p.name.startswith("audit.db")]
        return b"".join(p.read_bytes() for p in files).decode("utf-8", "replace")
    with db.engine.connect() as conn:
        return "\n".join(str(v) for t in db.tables.metadata.sorted_tables
                         for v in conn.exec_driver_sql(f"SELECT t::text FROM {t.name} t").scalars())


def test_pii_is_hashed_or_dropped_everywhere(db):
    email, name, ssn = "alice.secret@example.com", "Alice Wonderland", 987654321
    log = db.open(pii={"name": "drop", "email": "hash", "ssn": "hash"}, salt=SALT)
    record = {"name": name, "email": email, "ssn": ssn, "age": 41}
    warnings = [{"check": "email_domain", "column": "email", "value": email,
                 "msg": f"'email' = {email!r}, expected a company domain"},
                {"check": "ssn_range", "column": "ssn", "value": ssn, "msg": "out of range"}]
    log.record(rid(), [record], [answer({"label": 1, "echo": f"hello {name}"},
                                        warnings=warnings)],
               latency_ms=1, review={0: "guardrail"})
    with db.down():  # and the spool never holds raw PII either
        log.record(rid(), [record], [answer(warnings=warnings)], latency_ms=1)
    spooled = db.spool.read_text()
    log.flush()
    stored = everything_stored(db)
    hashed = "sha256:" + hmac.new(SALT.encode(), email.encode(), hashlib.sha256).hexdigest()
    for text in (stored, spooled):
        assert email not in text and name not in text and str(ssn) not in text
        assert hashed in text
    for row in db.rows():
        [record] = records_of(row["input"])
        assert "name" not in record
        assert record["email"] == hashed and record["age"] == 41
        assert record["ssn"].startswith("sha256:")


def test_hashing_pii_needs_a_salt(db, monkeypatch):
    monkeypatch.delenv("NB2PROD_PII_SALT", raising=False)
    with pytest.raises(AuditError, match="salt is missing") as err:
        db.open(pii={"email": "hash"})
    assert "NB2PROD_PII_SALT" in err.value.fix
    monkeypatch.setenv("NB2PROD_PII_SALT", "short")
    with pytest.raises(AuditError, match="shorter than 16"):
        db.open(pii={"email": "hash"})
    monkeypatch.setenv("NB2PROD_PII_SALT", SALT)
    log = db.open(pii={"email": "hash"})
    log.record(rid(), [{"email": "a@b.c"}], [answer()], latency_ms=1)
    expected = "sha256:" + hmac.new(SALT.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    assert records_of(db.rows()[0]["input"]) == [{"email": expected}]


def test_unknown_pii_action_is_refused(db):
    with pytest.raises(AuditError, match="unknown PII action") as err:
        db.open(pii={"email": "encrypt"})
    assert "drop" in err.value.fix and "hash" in err.value.fix


# -- concurrency and durability ----------------------------------------------------------------

def test_eight_threads_fifty_records_each(db):
    log = db.open(timeout=5.0)  # the default busy timeout: waits, never gives up, under load
    errors: list[BaseException] = []
    stored: list[str] = []

    def work(thread: int) -> None:
        try:
            for i in range(50):
                result = log.record(f"{thread}-{i}-{rid()}", [{"t": thread, "i": i}],
                                    [answer()], latency_ms=1)
                stored.append(result.stored)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stored == ["database"] * 400  # busy waits, never a detour through the spool
    assert len(set(db.request_ids())) == 400


WRITER = """
import sys, uuid
from nb2prod.runtime.audit import AuditLog
url, prefix, spool, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
log = AuditLog.open(url, model_version="demo:v1", table_prefix=prefix, spool_path=spool)
i = 0
while count == 0 or i < count:
    request = f"{uuid.uuid4().hex}-{i}"
    log.record(request, [{"i": i, "x": 0.5}] * 3, [{"prediction": 1, "source": "model",
               "reason": None, "warnings": []}] * 3, latency_ms=1.0)
    print(request, flush=True)
    i += 1
log.close()
"""


def writer(db: Db, count: int, spool: str = "spool.jsonl") -> subprocess.Popen:
    """A separate process recording requests, printing each id once ``record`` returned."""
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, db.url, db.prefix, str(db.tmp_path / spool), str(count)],
        stdout=subprocess.PIPE, text=True, cwd=db.tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_every_acknowledged_record_survives_sigkill(db):
    db.open()  # create the tables before the writer races to
    proc = writer(db, count=0)
    printed = []
    for line in proc.stdout:
        printed.append(line.strip())
        if len(printed) == 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # whatever it printed before dying was acknowledged too
    proc.wait()
    printed += [line for line in rest.split("\n")[:-1]]  # only whole lines
    assert proc.returncode == -signal.SIGKILL
    stored = set(db.request_ids())
    assert len(printed) >= 40
    assert [r for r in printed if r not in stored] == []


@pytest.mark.slow
def test_worker_processes_share_one_database(db):
    db.open()
    procs = [writer(db, count=60, spool=f"spool{i}.jsonl") for i in range(3)]
    printed = [line.strip() for p in procs for line in p.stdout]
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert len(printed) == 180
    assert sorted(set(db.request_ids())) == sorted(printed)


# -- outages: refuse to start, spool, flush exactly once -------------------------------------------

def test_unreachable_postgres_at_start_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://auditor:s3cret-pw@127.0.0.1:{port}/audit"
    started = time.monotonic()
    with pytest.raises(AuditError) as err:
        AuditLog.open(url, model_version="demo:v1", timeout=2)
    assert time.monotonic() - started < 10
    text = str(err.value)
    assert "s3cret-pw" not in text
    assert err.value.where == f"postgresql+psycopg://auditor:***@127.0.0.1:{port}/audit"
    assert "cannot open the audit database" in err.value.what
    assert f"127.0.0.1:{port}" in err.value.fix and "start the database" in err.value.fix


def test_unusable_sqlite_path_at_start_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-dir" / "audit.db"
    with pytest.raises(AuditError, match="cannot open the audit database") as err:
        AuditLog.open(missing, model_version="demo:v1")
    assert str(missing.parent) in err.value.fix


def test_not_a_url_is_a_clear_error():
    with pytest.raises(AuditError, match="cannot open|not a database URL") as err:
        AuditLog.open("nosuchdb+driver://x:pw@h/db", model_version="demo:v1")
    assert "pw@" not in str(err.value)


def test_inputs_given_as_an_array_are_stored_as_the_records_would_be(db):
    """``values`` (the frame's array, ``FrameMaker.array``) is the records' table without a
    walk over them: stored the same, in the database and through the spool, NaN as null."""
    import numpy as np

    log = db.open()
    inputs = [{"a": 1.5, "b": None}, {"a": 2.0, "b": -0.0}, {"a": 1e-300, "b": 3.25}]
    values = np.array([[1.5, np.nan], [2.0, -0.0], [1e-300, 3.25]])
    walked, given = rid(), rid()
    log.record(walked, inputs, [answer()] * 3, latency_ms=1)
    log.record(given, inputs, [answer()] * 3, latency_ms=1, values=values)
    with db.down():  # spooled as JSON lines, then flushed
        spooled = rid()
        assert log.record(spooled, inputs, [answer()] * 3, latency_ms=1,
                          values=np.asfortranarray(values)).stored == "spool"  # orjson needs C order
    assert log.flush() == 1
    stored = {r["request_id"]: r["input"] for r in db.rows()}
    assert stored[given] == stored[walked] == stored[spooled] == {
        "columns": ["a", "b"], "rows": [[1.5, None], [2.0, -0.0], [1e-300, 3.25]]}
    assert records_of(stored[given]) == [{"a": 1.5, "b": None}, {"a": 2.0, "b": -0.0},
                                         {"a": 1e-300, "b": 3.25}]


def test_an_array_of_inputs_is_not_stored_where_pii_must_be_removed(db):
    import numpy as np

    log = db.open(pii={"b": "drop"})
    request = rid()
    log.record(request, [{"a": 1.5, "b": 7.0}], [answer()], latency_ms=1,
               values=np.array([[1.5, 7.0]]))
    assert records_of(db.rows()[0]["input"]) == [{"a": 1.5}]


def test_outage_spools_then_flushes_exactly_once(db):
    log = db.open()
    before = rid()
    log.record(before, [{"x": 0}], [answer()], latency_ms=1)
    with db.down():
        during = [rid() for _ in range(3)]
        results = [log.record(r, [{"x": i}, {"x": -i}], [answer(), answer()], latency_ms=1,
                              review={1: "guardrail"}) for i, r in enumerate(during)]
        assert [r.stored for r in results] == ["spool"] * 3
        assert len(db.spool.read_text().splitlines()) == 3
        with pytest.raises(AuditUnavailable, match="cannot flush"):
            log.flush()
        assert log.status()["spooled"] == 3 and log.status()["last_error"]
    assert log.flush() == 3
    assert log.flush() == 0
    ids = db.request_ids()
    assert sorted(ids) == sorted([before] + during)  # each once
    assert {r["request_id"]: r["rows"] for r in db.rows()} == {before: 1, **dict.fromkeys(during, 2)}
    assert sorted(r["request_id"] for r in db.rows("review")) == sorted(during)
    assert db.spool.read_text() == ""
    after = rid()
    assert log.record(after, [{"x": 9}], [answer()], latency_ms=1).stored == "database"


def test_a_replayed_spool_inserts_nothing_twice(db):
    """A crash after the flush committed but before the spool was emptied replays it."""
    log = db.open()
    with db.down():
        spooled = [rid() for _ in range(2)]
        for r in spooled:
            log.record(r, [{"x": 1}], [answer()], latency_ms=1, review={0: "low_confidence"})
    lines = db.spool.read_bytes()
    assert log.flush() == 2
    db.spool.write_bytes(lines)  # as if the process died before truncating
    assert log.flush() == 2
    assert sorted(db.request_ids()) == sorted(spooled)
    assert len(db.rows("review")) == 2


def test_full_spool_refuses_rather_than_loses(db):
    log = db.open(spool_max_records=2)
    with db.down():
        kept = [rid(), rid()]
        for r in kept:
            assert log.record(r, [{"x": 1}], [answer()], latency_ms=1).stored == "spool"
        with pytest.raises(AuditUnavailable) as err:
            log.record(rid(), [{"x": 1}], [answer()], latency_ms=1)
        assert err.value.status == 503
        assert "spool is full" in str(err.value) and "restore the audit database" in err.value.fix
    assert log.flush() == 2
    assert sorted(db.request_ids()) == sorted(kept)


def test_spool_is_bounded_by_bytes_too(db):
    log = db.open(spool_max_bytes=2_000)
    with db.down():
        log.record(rid(), [{"x": 1}], [answer()], latency_ms=1)
        with pytest.raises(AuditUnavailable, match="spool is full"):
            log.record(rid(), [{"x": "y" * 3_000}], [answer()], latency_ms=1)


def test_background_flusher_moves_the_spool_when_the_database_returns(db):
    log = db.open(flush_interval=0.05)
    with db.down():
        spooled = rid()
        assert log.record(spooled, [{"x": 1}], [answer()], latency_ms=1).stored == "spool"
    deadline = time.monotonic() + 15
    while spooled not in db.request_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.request_ids() == [spooled]
    assert log.status()["spooled"] == 0


def test_a_restarted_service_flushes_what_the_last_one_spooled(db):
    log = db.open()
    with db.down():
        spooled = rid()
        log.record(spooled, [{"x": 1}], [answer()], latency_ms=1)
        log.close()  # cannot flush: the spool file keeps the record
    assert db.request_ids() == []
    db.open()
    assert db.request_ids() == [spooled]


def test_a_torn_spool_line_is_skipped_and_the_rest_kept(db):
    log = db.open()
    with db.down():
        first = rid()
        log.record(first, [{"x": 1}], [answer()], latency_ms=1)
        with db.spool.open("ab") as f:
            f.write(b'{"audit": [{"request_id": "torn')  # a crash mid-append
        second = rid()
        log.record(second, [{"x": 2}], [answer()], latency_ms=1)
    assert log.flush() == 2
    assert sorted(db.request_ids()) == sorted([first, second])


def test_opening_the_default_log_while_it_is_off_says_so(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NB2PROD_AUDIT_URL", "off")
    with pytest.raises(AuditError, match=r"the audit log is off") as caught:
        AuditLog.open(model_version="m:1", notebook_sha256="0" * 64)
    assert caught.value.where == "$NB2PROD_AUDIT_URL"
    assert not (tmp_path / "off").exists()  # it used to open a SQLite file named "off"
