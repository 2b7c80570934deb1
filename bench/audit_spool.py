"""What the audit log's local spool costs, beside the database write every request makes.

    .venv/bin/python bench/audit_spool.py [--rounds 20] [--pg URL]

Flagship-shaped requests (30 float features, answers as the Predictor gives them; 1 and
100 rows). Per request, p50 and p99 in ms, in interleaved rounds (every round runs every
case once, in rotating order) so machine noise hits all alike:

- ``up``: ``AuditLog.record`` with the database up (SQLite ``NORMAL`` and ``FULL``;
  PostgreSQL when one answers at ``--pg``), the cost every request pays; and the
  same entries through ``Failover.write`` vs. ``AuditLog._store``, the spool's share of it.
- ``outage``: the entries into the spool while the database is away: the JSONL
  ``Spool.append`` (fsync'd) and the alternative considered, a local SQLite table
  (WAL, ``synchronous=FULL``, one ``INSERT`` a request, count and bytes kept in the same
  transaction).
- ``shared``: a spool file two worker processes append to in turn (two ``Spool``s on one
  path: each sees the other's appends), at several sizes; each case JSONL vs. SQLite.
- ``flush``: 2,000 spooled 1-row requests moved into SQLite / PostgreSQL by ``flush()``.

Writes bench/results/audit_spool.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from nb2prod.core.jsonify import dumps
from nb2prod.runtime.audit import AuditLog
from nb2prod.runtime.audit.errors import SpoolFullError
from nb2prod.runtime.audit.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FEATURES = [f"{part} {what}" for part in ("mean", "error", "worst") for what in (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
    "concave points", "symmetry", "fractal dimension")]
SHARED_MB = (0, 1, 8, 32)  # spool sizes for the shared-file case
BURST = 20  # requests per case per round


def records(n: int) -> tuple[list[dict], list[dict]]:
    """``n`` flagship-like input records and the Predictor's answers for them."""
    inputs = [{f: round(10 + i * 0.37 + j * 1.13, 4) for j, f in enumerate(FEATURES)}
              for i in range(n)]
    answers = [{"prediction": {"label": "benign", "probability": 0.93}, "source": "model",
                "reason": None, "warnings": []} for _ in range(n)]
    return inputs, answers


class SqliteSpool:
    """The alternative: spooled entries as rows of a local SQLite table, durable per append."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20, max_entries: int = 100_000):
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # the file spool's promise: fsync'd
        self.conn.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, "
                          "entry TEXT NOT NULL)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS spool_size (k INTEGER PRIMARY KEY, "
                          "n INTEGER NOT NULL, bytes INTEGER NOT NULL)")
        self.conn.execute("INSERT OR IGNORE INTO spool_size VALUES (0, 0, 0)")

    def append(self, entry: Any) -> None:
        """One entry in one fsync'd transaction, or ``SpoolFullError``."""
        text = dumps(entry)
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        n, size = c.execute("SELECT n, bytes FROM spool_size").fetchone()
        if n + 1 > self.max_entries or size + len(text) > self.max_bytes:
            c.execute("ROLLBACK")
            raise SpoolFullError("full")
        c.execute("INSERT INTO spool (entry) VALUES (?)", (text,))
        c.execute("UPDATE spool_size SET n = n + 1, bytes = bytes + ?", (len(text),))
        c.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def pg_answers(url: str) -> bool:
    """True when something accepts TCP connections at the URL's host:port."""
    u = sa.make_url(url)
    try:
        socket.create_connection((u.host, u.port or 5432), timeout=1).close()
        return True
    except OSError:
        return False


def pct(times: list[float]) -> dict[str, float]:
    """p50 / p99 in ms."""
    ordered = sorted(times)
    return {"p50": round(statistics.median(ordered) * 1e3, 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
            "n": len(ordered)}


def interleaved(cases: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict]:
    """Run every case ``BURST`` times a round, rotating the order; timings per call."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for _ in range(BURST):
                started = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - started)
    return {name: pct(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pg", default=os.environ.get("NB2PROD_TEST_PG_URL", PG_URL))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nb2prod-bench-spool-"))
    os.environ.update(BENTOML_HOME=str(work / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    prefix = f"b{uuid.uuid4().hex[:8]}_"
    pg = pg_answers(args.pg)
    logs: dict[str, AuditLog] = {}
    for name, sync in (("sqlite NORMAL", "NORMAL"), ("sqlite FULL", "FULL")):
        logs[name] = AuditLog.open(work / f"{name.split()[1]}.db", model_version="bench:v1",
                                   spool_path=work / f"{name}.jsonl", flush_interval=None,
                                   sqlite_synchronous=sync)
    if pg:
        logs["postgresql"] = AuditLog.open(args.pg, model_version="bench:v1",
                                           table_prefix=prefix, flush_interval=None,
                                           spool_path=work / "pg.jsonl")
    sizes = {n: records(n) for n in (1, 100)}
    entry = {n: logs["sqlite NORMAL"]._entry("x", *sizes[n], 1.0, {}) for n in sizes}
    result: dict[str, Any] = {"entry_bytes": {n: len(dumps(e)) for n, e in entry.items()}}

    # up: what every request pays, and the spool's share of it (Failover.write vs _store)
    up: dict[str, Callable[[], None]] = {}
    for name, log in logs.items():
        for n in sizes:
            up[f"record {n} row(s), {name}"] = (
                lambda log=log, n=n: log.record(uuid.uuid4().hex, *sizes[n], latency_ms=1.0))
        up[f"Failover.write 1 row, {name}"] = lambda log=log: log._failover.write(
            log._entry(uuid.uuid4().hex, *sizes[1], 1.0, {}))
        up[f"_store 1 row, {name}"] = lambda log=log: log._store(
            [log._entry(uuid.uuid4().hex, *sizes[1], 1.0, {})], False)
    result["up"] = interleaved(up, args.rounds)

    # outage: the same entries into the JSONL spool and into a SQLite table
    file_spool = Spool(work / "outage.jsonl", max_entries=10**7, max_bytes=1 << 40)
    table_spool = SqliteSpool(work / "outage-spool.db", max_entries=10**7, max_bytes=1 << 40)
    outage = {}
    for n in sizes:
        outage[f"JSONL append {n} row(s)"] = lambda n=n: file_spool.append(entry[n])
        outage[f"SQLite table append {n} row(s)"] = lambda n=n: table_spool.append(entry[n])
    result["outage"] = interleaved(outage, args.rounds)

    # shared: two workers appending to one spool in turn, at several sizes
    shared: dict[str, Any] = {}
    line = dumps(entry[1]).encode() + b"\n"
    for mb in SHARED_MB:
        path, db = work / f"shared-{mb}.jsonl", work / f"shared-{mb}.db"
        path.write_bytes(line * (mb * (1 << 20) // len(line)))
        a, b = (Spool(path, max_entries=10**7, max_bytes=1 << 40) for _ in range(2))
        ta = SqliteSpool(db, max_entries=10**7, max_bytes=1 << 40)
        ta.conn.execute("BEGIN")
        ta.conn.executemany("INSERT INTO spool (entry) VALUES (?)",
                            [(line.decode(),)] * (mb * (1 << 20) // len(line)))
        ta.conn.execute("COMMIT")
        tb = SqliteSpool(db, max_entries=10**7, max_bytes=1 << 40)
        len(a), len(b)  # both have counted the prefilled file once
        workers, tables = itertools.cycle((a, b)), itertools.cycle((ta, tb))  # taking turns
        shared[f"JSONL, {mb} MB spooled"] = lambda w=workers: next(w).append(entry[1])
        shared[f"SQLite table, {mb} MB spooled"] = lambda w=tables: next(w).append(entry[1])
    result["shared"] = interleaved(shared, max(3, args.rounds // 4))

    # flush: 2,000 spooled requests into the database
    flush = {}
    for name in [n for n in logs if n != "sqlite FULL"]:
        log = logs[name]
        for _ in range(2000):
            log._failover.spool.append(log._entry(uuid.uuid4().hex, *sizes[1], 1.0, {}))
        started = time.perf_counter()
        moved = log.flush()
        flush[name] = {"requests": moved, "seconds": round(time.perf_counter() - started, 3)}
    result["flush"] = flush

    for log in logs.values():
        log.close()
    if pg:
        engine = sa.create_engine(args.pg)
        with engine.begin() as conn:
            for t in ("audit", "feedback", "review"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {prefix}{t}")
        engine.dispose()
    shutil.rmtree(work)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_avg": [round(x, 2) for x in os.getloadavg()],
                         "postgresql": pg, "rounds": args.rounds, "burst": BURST}
    write(result)


def write(result: dict[str, Any]) -> None:
    """bench/results/audit_spool.{json,md}."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_spool.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    lines = ["# The audit log's local spool: what it costs", "",
             f"Command: `.venv/bin/python bench/audit_spool.py --rounds {m['rounds']}`; "
             f"{m['cpus']} cores (load average {m['load_avg'][0]} at the end: shared "
             f"machine); interleaved rounds of {m['burst']} calls per case. Entries: "
             f"{result['entry_bytes'][1]} bytes (1 row), {result['entry_bytes'][100]} bytes "
             "(100 rows) of JSON.", ""]
    for part, title in (("up", "Database up: what every request pays"),
                        ("outage", "Database away: one request into the spool"),
                        ("shared", "Two workers sharing one spool, 1-row requests")):
        lines += [f"## {title}", "", "| case | p50 ms | p99 ms | calls |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['p50']} | {v['p99']} | {v['n']} |"
                  for k, v in result[part].items()]
        lines.append("")
    lines += ["## Flush: spooled 1-row requests into the database", "",
              "| database | requests | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {v['requests']} | {v['seconds']} |" for k, v in result["flush"].items()]
    (RESULTS / "audit_spool.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
