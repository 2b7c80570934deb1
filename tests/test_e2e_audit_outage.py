"""The served flagship through an audit database outage and a killed worker (issue 13, 2).

A real ``bentoml serve``: records go to the spool (the write lock held by another
connection), the SQLite audit file is made read-only (``chattr +i``; the tests run as
root, whom chmod does not stop), the worker is SIGKILLed and BentoML starts another,
which finds a non-empty spool and a database it cannot write. It used to refuse
to start ("cannot flush the audit spool ... attempt to write a readonly database"),
retried every 10 s; it must start, answer 200 into the spool, and flush when the file is
writable again: every acknowledged request recorded, once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from process_tree import stop_tree

from nb2prod.runtime.loading import load_version
from nb2prod.serve import Server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def recorded(db: Path) -> list[str]:
    """Request ids in the audit file, read afresh."""
    conn = sqlite3.connect(db)
    try:
        return [r for (r,) in conn.execute("SELECT request_id FROM nb2prod_audit")]
    finally:
        conn.close()


def workers(server: Server) -> set[int]:
    """PIDs of the server's service workers (BentoML starts them in their own session)."""
    found = set()
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if any("worker" in part for part in proc.cmdline()):
                found.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_worker_killed_while_the_database_is_read_only_starts_and_answers_into_the_spool(
    flagship_build, tmp_path
):
    db, spool = tmp_path / "audit.db", tmp_path / "spool.jsonl"
    records = list(load_version(flagship_build["model_tag"])[0].examples)[:2]
    server = Server(
        flagship_build["bento_tag"],
        cwd=tmp_path,
        log=tmp_path / "server.log",
        env={
            **os.environ,
            "NB2PROD_AUDIT_URL": f"sqlite:///{db}",
            "NB2PROD_AUDIT_SPOOL": str(spool),
        },
    )
    acked: list[str] = []
    refused = 0
    immutable = False

    def ask(client: httpx.Client, n: int) -> None:
        nonlocal refused
        for _ in range(n):
            r = client.post("/predict", json={"records": records})
            if r.status_code == 200:
                acked.append(r.json()["request_id"])
            else:
                refused += 1

    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ask(client, 5)
        assert len(recorded(db)) == 5
        # The old worker's connections, opened before, would keep committing into the
        # WAL: a write lock held meanwhile sends its records to the spool instead.
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        done = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot make {db} read-only here: {done.stderr.strip()}")
        immutable = True
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ask(client, 5)  # into the spool
        assert refused == 0 and len(spool.read_text().splitlines()) == 5
        [worker] = workers(server)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while not workers(server) - {worker}:
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
        locker.execute("COMMIT")  # the lock goes; the file stays read-only
        locker.close()
        server.wait_ready(timeout=90)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ask(client, 10)  # the new worker: read-only database, non-empty spool
        assert refused == 0, server.output()[-3000:]
        assert len(recorded(db)) == 5  # nothing reached the read-only file
        subprocess.run(["chattr", "-i", str(db)], check=True)
        immutable = False
        deadline = time.monotonic() + 60  # the flusher's back-off is at most 30 s
        while set(acked) - set(recorded(db)):
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.5)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        output = stop_tree(server)
    stored = recorded(db)
    print(
        f"acknowledged {len(acked)}, recorded {len(stored)} ({len(set(stored))} distinct), "
        f"refused {refused}"
    )
    assert sorted(stored) == sorted(acked)  # every acknowledged request, each once
    assert "nb2prod: cannot serve" not in output  # the refusal that looped every 10 s
    assert output.count("nb2prod: serving") >= 2, output[-3000:]  # the new worker started
    assert "attempt to write a readonly database" in output  # said, not hidden
