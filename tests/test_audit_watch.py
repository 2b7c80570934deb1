"""A SQLite audit file removed or moved while serving (issue 13, item 1).

SQLite keeps writing into a file it has open after its directory is removed: before
this, every request was answered 200 into an unlinked inode nobody could read. Real
files, a real ``rm -r`` while a thread writes: every record acknowledged after the
removal must be readable afterwards, or ``record()`` must have raised ``AuditUnavailable``.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from audit_db import answer, rid

from nb2prod.runtime.audit import AuditLog, AuditUnavailable
from nb2prod.runtime.audit.failover import Refusals
from nb2prod.runtime.audit.spool import Spool


def ids_in(path: Path) -> set[str]:
    """Request ids stored in the SQLite file at ``path`` (read afresh)."""
    conn = sqlite3.connect(path)
    try:
        return {r for (r,) in conn.execute("SELECT request_id FROM nb2prod_audit")}
    finally:
        conn.close()


class Writer:
    """A thread recording 1-row requests as fast as it can, noting when each was started
    and what ``record()`` answered."""

    def __init__(self, log: AuditLog):
        self.log, self.stop = log, threading.Event()
        self.acked: list[tuple[float, str, str]] = []  # (started, request id, where stored)
        self.refused: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            request, started = rid(), time.monotonic()
            try:
                stored = self.log.record(request, [{"x": 1}], [answer()], latency_ms=1).stored
            except AuditUnavailable:
                self.refused.append(started)
                time.sleep(0.005)
                continue
            self.acked.append((started, request, stored))

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= n

    def join(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_rm_r_of_the_database_directory_while_writing_loses_no_acknowledged_record(
    tmp_path, caplog
):
    folder, spool = tmp_path / "db", tmp_path / "elsewhere" / "spool.jsonl"
    folder.mkdir()
    spool.parent.mkdir()
    log = AuditLog.open(
        folder / "audit.db", model_version="demo:v1", spool_path=spool, flush_interval=0.05
    )
    writer = Writer(log)
    try:
        writer.wait_for(50)
        shutil.rmtree(folder)  # the database, its WAL and its shared memory file
        removed = time.monotonic()
        time.sleep(0.3)
        folder.mkdir()  # the operator puts the directory back
        time.sleep(0.3)
        after = len(writer.acked)
        deadline = time.monotonic() + 15  # until writes reach the new file again
        while time.monotonic() < deadline and not any(
            s == "database" for _, _, s in writer.acked[after:]
        ):
            time.sleep(0.05)
    finally:
        writer.join()
    log.flush()
    since = [(r, s) for started, r, s in writer.acked if started >= removed]
    stored = ids_in(folder / "audit.db")
    assert since and {s for _, s in since} == {"spool", "database"}
    missing = [r for r, _ in since if r not in stored]
    print(
        f"acknowledged after rm -r: {len(since)}; in the new database: {len(since) - len(missing)}"
    )
    assert missing == []
    lost = [
        r for r in caplog.records if r.levelno == logging.ERROR and "was removed" in r.getMessage()
    ]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]  # once, loudly
    assert "audit.db" in lost[0].getMessage() and str(spool) in lost[0].getMessage()
    log.close()


def test_with_the_spool_beside_the_database_a_removal_is_503_until_it_is_back(tmp_path, caplog):
    """The default spool lives in the database's directory: gone with it, so nothing can
    keep a record and ``record()`` refuses; no request is acknowledged into the void. The
    refusal is said once, loudly, with its fix; the rest are counted, not logged each."""
    folder = tmp_path / "db"
    folder.mkdir()
    log = AuditLog.open(
        folder / "audit.db",
        model_version="demo:v1",
        spool_path=folder / "spool.jsonl",
        flush_interval=None,
    )
    log.record(rid(), [{"x": 1}], [answer()], latency_ms=1)
    shutil.rmtree(folder)
    with caplog.at_level(logging.WARNING, logger="nb2prod"):
        for _ in range(3):
            with pytest.raises(AuditUnavailable) as err:
                log.record(rid(), [{"x": 1}], [answer()], latency_ms=1)
            assert err.value.status == 503 and "removed" in err.value.what
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        refusing = [m for m in errors if "refusing requests with 503" in m]
        assert len(refusing) == 1 and "restore the audit database" in refusing[0], errors
        folder.mkdir()
        log._failover._retry_at = 0.0  # skip the back-off: the next write tries the path
        after = rid()
        assert log.record(after, [{"x": 1}], [answer()], latency_ms=1).stored == "database"
    assert ids_in(folder / "audit.db") == {after}
    assert caplog.records[-1].getMessage() == (
        "audit log: records are kept again, after 3 request(s) refused")
    log.close()


def test_refusals_in_a_long_outage_are_counted_on_a_line_now_and_then(caplog):
    clock = {"now": 0.0}
    refusals = Refusals(every=lambda: 60.0, clock=lambda: clock["now"])
    refused = AuditUnavailable("the spool cannot keep the record", where="sqlite:///a.db")
    with caplog.at_level(logging.WARNING, logger="nb2prod"):
        refusals.kept()  # nothing refused yet: nothing said
        for now in (0.0, 10.0, 30.0, 61.0, 70.0):
            clock["now"] = now
            refusals.refused(refused)
        refusals.kept()
        refusals.kept()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", f"{refused} (refusing requests with 503; the next refusals are counted)"),
        ("ERROR", "audit log: 4 request(s) refused so far in this outage: "
                  "the spool cannot keep the record"),
        ("WARNING", "audit log: records are kept again, after 5 request(s) refused"),
    ]


def test_a_moved_directory_is_noticed_by_an_idle_log_and_nothing_more_goes_there(
    tmp_path, monkeypatch, caplog
):
    from nb2prod.runtime.audit import sinks

    monkeypatch.setattr(sinks, "CHECKPOINT_S", 0.05)
    folder = tmp_path / "db"
    folder.mkdir()
    log = AuditLog.open(
        folder / "audit.db",
        model_version="demo:v1",
        spool_path=tmp_path / "spool.jsonl",
        flush_interval=None,
    )
    before = rid()
    log.record(before, [{"x": 1}], [answer()], latency_ms=1)
    folder.rename(tmp_path / "db.moved")
    folder.mkdir()
    deadline = time.monotonic() + 5
    while not any("was removed" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the maintenance thread did not notice"
        time.sleep(0.05)
    later = rid()
    assert log.record(later, [{"x": 2}], [answer()], latency_ms=1).stored == "database"
    log.close()
    assert ids_in(folder / "audit.db") == {later}
    assert ids_in(tmp_path / "db.moved" / "audit.db") == {before}


def test_a_spool_file_removed_while_open_is_made_again_at_its_path(tmp_path, caplog):
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    spool.append({"n": 1})
    path.unlink()
    spool.append({"n": 2})  # not into the unlinked file
    assert path.read_text().splitlines() == ['{"n":2}']
    assert len(spool) == 1
    assert any("removed or replaced" in r.getMessage() for r in caplog.records)
    spool.close()
