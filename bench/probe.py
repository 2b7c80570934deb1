"""The probe of issue 13, re-measured: the served flagship fuzzed and put through faults.

    .venv/bin/python bench/probe.py [--quick] [--reuse-build DIR] [--examples N]
                                    [--only SECTION ...]

Builds the flagship (notebooks/breast_cancer.ipynb) into a temporary BENTOML_HOME and
serves it with ``bentoml serve``, one worker, defaults on, the SQLite audit database in a
directory of its own under a temporary directory and the spool (``NB2PROD_AUDIT_SPOOL``)
beside that directory unless a scenario says otherwise. A fresh server per scenario:

1. fuzz: schemathesis against /docs.json with the four checks the CI test runs (the
   response-schema check included), the admin token, a fixed seed; cases, failures,
   errors, and the 5xx in the server's access log.
2. faults under a steady load (``CLIENTS`` threads posting 1-row /predict, each 200's
   request_id kept as acknowledged): ``rm -r`` of the database's directory; the database
   made read-only (chmod, which root ignores, then ``chattr +i``); SIGKILL of the worker,
   three times; a full disk (a 2 MB tmpfs under the database). After each the service is
   given time to flush its spool, and every acknowledged id is looked up in the database
   and in the spool: missing = acknowledged - recorded must be 0.
3. restart during an outage: the database read-only, the worker SIGKILLed; does the new
   one start, how long until a 200, what failed meanwhile, and do its spooled records
   reach the database once it is writable.
4. orphaned workers: ``kill -9`` of bentoml serve's process group; how long until the
   worker is gone and the port free, and whether a new ``bentoml serve`` starts on it.

Needs root for ``chattr`` and ``mount -t tmpfs`` (a scenario that cannot do its fault
says so in its row instead of a figure). Counts are the point, not latency: the machine
may be shared. Writes bench/results/probe.{json,md}; ``--quick`` is a short smoke run
(few fuzz cases, short faults) whose results are not meant to be committed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import psutil
from common import Flagship, add_reuse_option, machine, machine_md, workdir, write

from nb2prod.serve import Server

TOKEN = "probe-admin-token-0123456789"  # 16+ characters, or the admin routes stay off
SEED = 20261123
CLIENTS = 4
FUZZ_EXAMPLES = 1500  # per operation: 10,000+ cases in total (1000 made 8,117)
FUZZ_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
               "response_schema_conformance")
# As tests/test_load.py: every route documented, fuzzed batches capped at 50 records
# (a 10,000-record batch takes seconds to answer and would bound the run by itself).
FUZZ_HOOKS = '''
import schemathesis


@schemathesis.hook
def before_load_schema(context, raw_schema):
    predict = raw_schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    predict["application/json"]["schema"]["properties"]["records"]["maxItems"] = 50
'''
ACCESS_STATUS = re.compile(r"\(status=(\d{3}),")
REQUEST_ID = re.compile(r'"request_id":\s*"([0-9a-f]{32})"')


# -- the service and its audit files --------------------------------------------------------

class Served:
    """One ``bentoml serve`` of the flagship under ``tmp/name``: the database in
    ``db_dir`` (default ``tmp/name/db``), the spool at ``spool`` (default beside it)."""

    def __init__(self, fs: Flagship, tmp: Path, name: str, *, db_dir: Path | None = None,
                 spool: Path | None = None, port: int | None = None, extra: dict | None = None):
        self.where = tmp / name
        self.db_dir = db_dir or self.where / "db"
        self.db_dir.mkdir(parents=True, exist_ok=True)
        self.db, self.spool = self.db_dir / "audit.db", spool or self.where / "spool.jsonl"
        env = {**fs.env, "NB2PROD_AUDIT_URL": f"sqlite:///{self.db}",
               "NB2PROD_AUDIT_SPOOL": str(self.spool), **(extra or {})}
        self.server = Server(fs.bento_tag, cwd=self.where, env=env, port=port,
                             log=tmp / f"{name}.log")
        self.server.wait_ready(timeout=120)

    def workers(self) -> list[psutil.Process]:
        """The BentoML worker processes (circus starts each in a session of its own)."""
        found = []
        with suppress(psutil.NoSuchProcess):
            for proc in psutil.Process(self.server.proc.pid).children(recursive=True):
                with suppress(psutil.NoSuchProcess):
                    if "_bentoml_impl.worker" in " ".join(proc.cmdline()):
                        found.append(proc)
        return found

    def recorded(self) -> set[str]:
        """Request ids in the audit database, read over a fresh connection."""
        if not self.db.exists():
            return set()
        conn = sqlite3.connect(self.db, timeout=10)
        try:
            return {r for (r,) in conn.execute("SELECT request_id FROM nb2prod_audit")}
        except sqlite3.Error:
            return set()
        finally:
            conn.close()

    def spooled(self) -> set[str]:
        """Request ids waiting in the spool file."""
        try:
            text = self.spool.read_text(errors="replace")
        except OSError:
            return set()
        return {m.group(1) for line in text.splitlines() if (m := REQUEST_ID.search(line))}

    def stop(self) -> str:
        """Stop the server and whatever of its process tree outlives that; its output."""
        tree: list[psutil.Process] = []
        with suppress(psutil.NoSuchProcess):
            tree = psutil.Process(self.server.proc.pid).children(recursive=True)
        output = self.server.stop()
        _, alive = psutil.wait_procs(tree, timeout=5)
        for proc in alive:
            with suppress(psutil.NoSuchProcess):
                proc.kill()
        return output


def log_lines(output: str) -> dict:
    """What the server log says that a reader of the figures should know."""
    lines = output.splitlines()
    # a worker BentoML restarted logs as "[:1]", not "[entry_service:...:1]"
    said = [line.split("] ", 2)[-1][:300] for line in lines
            if ("[WARNING]" in line or "[ERROR]" in line) and "] drift: " not in line
            or "nb2prod: cannot" in line]
    return {"errors": sum("[ERROR]" in line for line in lines),
            "tracebacks": output.count("Traceback"),
            "workers_started": output.count("nb2prod: serving"),
            "refused_to_start": output.count("nb2prod: cannot serve"),
            "said": said[:8]}


# -- the steady load ------------------------------------------------------------------------

class Load:
    """``CLIENTS`` threads posting a 1-row /predict on keep-alive connections until
    :meth:`close`. Every answer is kept as (started, answered, phase, status): monotonic
    times, the phase when the answer (or the failure) came, status -1 for a connection
    error or timeout; every 200's request id as (started, id)."""

    def __init__(self, port: int, body: bytes, clients: int = CLIENTS, timeout: float = 30):
        self.port, self.body, self.timeout = port, body, timeout
        self.phase = "before"
        self.events: list[tuple[float, float, str, int]] = []
        self.acked: list[tuple[float, str]] = []
        self.problems: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self) -> None:
        conn = None
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.monotonic()
            try:
                conn.request("POST", "/predict", self.body, headers)
                resp = conn.getresponse()
                data, status = resp.read(), resp.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn, status = None, -1
                self.problems[f"{self.phase}: {type(exc).__name__}"] += 1
            else:
                if status == 200:
                    self.acked.append((started, json.loads(data)["request_id"]))
            self.events.append((started, time.monotonic(), self.phase, status))
            if status != 200:
                time.sleep(0.05)  # a refusing or restarting server: do not spin on it
        if conn is not None:
            conn.close()

    def wait_for(self, n: int, timeout: float = 30) -> None:
        """Until ``n`` requests have been acknowledged (the load really runs)."""
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def first_200_after(self, t: float, timeout: float) -> float | None:
        """When the first request sent after ``t`` was answered 200, waiting up to
        ``timeout`` s for one (None if none was)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [end for start, end, _, s in self.events[-500:] if start > t and s == 200]
            if done:
                return min(end for start, end, _, s in self.events if start > t and s == 200)
            time.sleep(0.05)
        return None

    def statuses(self, *phases: str) -> dict[str, int]:
        """Answers by status (``error`` for -1) in ``phases``."""
        c = Counter("error" if s < 0 else str(s) for _, _, p, s in self.events if p in phases)
        return dict(sorted(c.items()))

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)


def settle(served: Served, acked: set[str], timeout: float) -> dict:
    """Wait up to ``timeout`` s for every acknowledged id to reach the database (the
    flusher backs off to 30 s); then count where each one is."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and acked - served.recorded():
        time.sleep(0.5)
    in_db = acked & served.recorded()
    in_spool = (acked - in_db) & served.spooled()
    return {"acknowledged": len(acked), "in_database": len(in_db),
            "in_spool_only": len(in_spool), "missing": len(acked - in_db - in_spool),
            "flushed_after_s": round(time.monotonic() - started, 1)}


def run_fault(fs: Flagship, tmp: Path, name: str, body: bytes, inject, restore, *,
              hold_s: float, after_s: float, served_kw: dict | None = None,
              since_fault: bool = False) -> dict:
    """Serve, load, ``inject(served)`` (returns a dict of its own figures), keep the fault
    ``hold_s`` s, ``restore(served)``, load ``after_s`` s more, stop the load, settle.

    ``since_fault``: only requests started after the fault must be recorded (an ``rm -r``
    deletes those before it, by design of whoever ran it)."""
    served = Served(fs, tmp, name, **(served_kw or {}))
    load = Load(served.server.port, body)
    row: dict = {"scenario": name}
    try:
        load.wait_for(100)
        load.phase = "fault"
        t_fault = time.monotonic()
        row.update(inject(served, load) or {})
        time.sleep(hold_s)
        row["spooled_during_fault"] = len(served.spooled())
        restore(served)
        load.phase = "after"
        time.sleep(after_s)
    finally:
        load.close()
        restore(served)  # idempotent: a fault left on would break the cleanup
    acked = {rid for started, rid in load.acked if not since_fault or started >= t_fault}
    if since_fault:
        row["acknowledged_before_fault"] = len(load.acked) - len(acked)
    row.update(settle(served, acked, timeout=60))
    row["during_fault"] = load.statuses("fault")
    if load.statuses("chmod"):
        row["during_chmod"] = load.statuses("chmod")
    row["after_fault"] = load.statuses("after")
    row["client_errors"] = dict(load.problems)
    row["log"] = log_lines(served.stop())
    print(f"  {name}: {row['acknowledged']} acknowledged, {row['in_database']} in the "
          f"database, {row['in_spool_only']} only in the spool, {row['missing']} missing; "
          f"during the fault {row['during_fault']}")
    return row


# -- 1. fuzzing -----------------------------------------------------------------------------

def fuzz(fs: Flagship, tmp: Path, examples: int) -> dict:
    """schemathesis against /docs.json with the CI checks; 5xx counted in the access log."""
    served = Served(fs, tmp, "fuzz", extra={"NB2PROD_ADMIN_TOKEN": TOKEN})
    hooks, report = tmp / "probe_fuzz_hooks.py", tmp / "fuzz-report.json"
    hooks.write_text(FUZZ_HOOKS)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "run", f"{served.server.url}/docs.json",
             "--checks", FUZZ_CHECKS, "--max-examples", str(examples), "--seed", str(SEED),
             "--workers", "2", "--request-timeout", "30",
             "--header", f"Authorization: Bearer {TOKEN}",
             "--report", "json", "--report-json-path", str(report)],
            cwd=tmp, capture_output=True, text=True, timeout=3600,
            env={**os.environ, "PYTHONPATH": str(tmp), "SCHEMATHESIS_HOOKS": hooks.stem,
                 "NO_COLOR": "1"})
    finally:
        output = served.stop()
    elapsed = time.monotonic() - started
    if not report.exists():
        return {"measured": False, "why": f"st wrote no report (exit {proc.returncode}): "
                f"{proc.stdout[-1500:]} {proc.stderr[-1500:]}"}
    summary = json.loads(report.read_text())
    statuses = Counter(ACCESS_STATUS.findall(output))
    row = {"measured": True, "max_examples": examples, "seconds": round(elapsed, 1),
           "exit_code": proc.returncode, "cases": summary["test_cases"]["generated"],
           "operations_tested": summary["operations"]["tested"],
           "operations_total": summary["operations"]["total"],
           "failures": len(summary["failures"]), "errors": len(summary["errors"]),
           "responses_logged": sum(statuses.values()),
           "status_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
           "statuses": dict(sorted(statuses.items())),
           "warnings": {k: v for k, v in summary["warnings"].items() if v},
           "log": log_lines(output)}
    if row["failures"] or row["errors"]:  # schemathesis's own account, curl to reproduce
        failures = proc.stdout.find("= FAILURES =")
        row["failures_text"] = proc.stdout[failures:failures + 6000] if failures >= 0 else ""
        row["errors_text"] = [str(e)[:1500] for e in summary["errors"][:5]]
    print(f"  fuzz: {row['cases']} cases, {row['operations_tested']} operations, "
          f"{row['failures']} failures, {row['errors']} errors, {row['status_5xx']} 5xx "
          f"in {elapsed:.0f}s")
    return row


# -- 2. faults under load -------------------------------------------------------------------

def fault_rm(fs: Flagship, tmp: Path, body: bytes, hold_s: float, spool_beside: bool) -> dict:
    """``rm -r`` of the database's directory mid-load, then the directory made again.
    With ``spool_beside`` the spool is in that directory too (gone with it: 503 expected)."""
    name = "rm-r-spool-beside" if spool_beside else "rm-r"
    kw = {"spool": tmp / name / "db" / "spool.jsonl"} if spool_beside else {}

    def inject(served: Served, load: Load) -> dict:
        shutil.rmtree(served.db_dir)
        return {"fault": f"rm -r {served.db_dir.name}/ ({'with' if spool_beside else 'not'} "
                "the spool), mkdir again after the hold"}

    def restore(served: Served) -> None:
        served.db_dir.mkdir(exist_ok=True)

    return run_fault(fs, tmp, name, body, inject, restore, hold_s=hold_s, after_s=hold_s,
                     served_kw=kw, since_fault=True)


def chattr(flag: str, paths: list[Path]) -> str:
    """``chattr flag`` on the paths that exist; stderr of the first that fails, or ''."""
    for path in paths:
        if path.exists():
            done = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
            if done.returncode:
                return done.stderr.strip()
    return ""


def read_only(served: Served, hold_chmod_s: float, load: Load | None = None) -> dict:
    """The database read-only: its files and directory chmod'ed (root ignores that, so
    ``hold_chmod_s`` s of it alone are counted as phase ``chmod``), then ``chattr +i`` on
    audit.db and its directory. Not on -shm: the worker has it mapped, and a write to a
    mapped page of an immutable ext4 file is SIGBUS, a dead worker, not a read-only disk.
    The -wal is made immutable too: else the worker's open connections go on committing
    into it (a write on an open descriptor is not refused) and nothing is read-only."""
    for path in db_files(served):
        path.chmod(0o444)
    served.db_dir.chmod(0o555)
    if load is not None:
        load.phase = "chmod"
        time.sleep(hold_chmod_s)
        load.phase = "fault"
    failed = chattr("+i", [served.db, served.db.with_name(served.db.name + "-wal"),
                           served.db_dir])
    return {"fault": "chmod a-w on audit.db(-wal,-shm) and its directory, then chattr +i "
            "on audit.db, -wal and the directory"
            + (f" (chattr failed: {failed})" if failed else ""),
            "chattr_ok": not failed}


def db_files(served: Served) -> list[Path]:
    """audit.db and its -wal and -shm files, those that exist."""
    paths = [served.db, *(served.db.with_name(served.db.name + s) for s in ("-wal", "-shm"))]
    return [p for p in paths if p.exists()]


def writable(served: Served) -> None:
    """Undo :func:`read_only` (harmless when it was not applied)."""
    chattr("-i", [served.db_dir, *db_files(served)])
    if served.db_dir.exists():
        served.db_dir.chmod(0o755)
    for path in db_files(served):
        path.chmod(0o644)


def fault_read_only(fs: Flagship, tmp: Path, body: bytes, hold_s: float) -> dict:
    """The database read-only mid-load, then writable again."""
    row = run_fault(fs, tmp, "read-only", body,
                    lambda served, load: read_only(served, hold_s, load), writable,
                    hold_s=hold_s, after_s=hold_s)
    return row


def fault_sigkill(fs: Flagship, tmp: Path, body: bytes, kills: int) -> dict:
    """SIGKILL of the worker mid-load, ``kills`` times; BentoML starts another each time."""

    def inject(served: Served, load: Load) -> dict:
        restarts = []
        for _ in range(kills):
            old = served.workers()
            for proc in old:
                os.kill(proc.pid, signal.SIGKILL)
            t = time.monotonic()
            first = load.first_200_after(t, timeout=120)
            restarts.append(round(first - t, 1) if first else None)
            load.wait_for(len(load.acked) + 100)
        return {"fault": f"SIGKILL of the worker x{kills}", "answers_again_after_s": restarts}

    return run_fault(fs, tmp, "sigkill", body, inject, lambda served: None,
                     hold_s=0, after_s=2)


def fault_disk_full(fs: Flagship, tmp: Path, body: bytes, hold_s: float,
                    spool_on_it: bool) -> dict:
    """The database on a 2 MB tmpfs that the load fills; then 64 MB (a remount).
    With ``spool_on_it`` the spool is on that tmpfs too (503 expected once it is full)."""
    name = "disk-full-spool-too" if spool_on_it else "disk-full"
    mnt = tmp / name / "db"
    mnt.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode:
        return {"scenario": name, "measured": False,
                "why": f"mount -t tmpfs failed: {done.stderr.strip()}"}
    kw = {"spool": mnt / "spool.jsonl"} if spool_on_it else {}

    def inject(served: Served, load: Load) -> dict:
        deadline = time.monotonic() + 60
        while shutil.disk_usage(mnt).free > 64 * 1024 and time.monotonic() < deadline:
            time.sleep(0.1)
        usage = shutil.disk_usage(mnt)
        return {"fault": f"2 MB tmpfs under the database{' and the spool' if spool_on_it else ''}"
                f", {usage.free // 1024} KiB free when the hold began", "filled": usage.free
                <= 64 * 1024}

    def restore(served: Served) -> None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], capture_output=True)

    try:
        return run_fault(fs, tmp, name, body, inject, restore, hold_s=hold_s, after_s=hold_s,
                         served_kw=kw)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- 3. restart during an outage ------------------------------------------------------------

def restart_in_outage(fs: Flagship, tmp: Path, body: bytes, hold_s: float) -> dict:
    """Database read-only, worker SIGKILLed: does a new one start and serve into the spool,
    and do the records reach the database once it is writable?"""
    served = Served(fs, tmp, "restart-in-outage")
    load = Load(served.server.port, body)
    row: dict = {"scenario": "restart-in-outage"}
    try:
        load.wait_for(100)
        load.phase = "fault"
        row.update(read_only(served, 0))
        time.sleep(1)
        old = {p.pid for p in served.workers()}
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        load.phase = "restart"
        first = load.first_200_after(t_kill, timeout=120)
        row["new_worker_started"] = bool({p.pid for p in served.workers()} - old)
        row["answers_200_after_s"] = round(first - t_kill, 1) if first else None
        load.phase = "fault"
        time.sleep(hold_s)  # the new worker serving through the outage
        spooled = served.spooled()
        row["spooled_at_restore"] = len(spooled)
        row["in_database_at_restore"] = len({r for _, r in load.acked} & served.recorded())
        writable(served)
        load.phase = "after"
        time.sleep(hold_s)
    finally:
        load.close()
        writable(served)
    acked = {rid for _, rid in load.acked}
    row.update(settle(served, acked, timeout=60))
    row["spooled_then_flushed"] = len(spooled & served.recorded())
    row["during_restart"] = load.statuses("restart")
    row["during_fault"] = load.statuses("fault")
    row["after_fault"] = load.statuses("after")
    row["client_errors"] = dict(load.problems)
    row["log"] = log_lines(served.stop())
    print(f"  restart in an outage: started {row['new_worker_started']}, 200 after "
          f"{row['answers_200_after_s']}s, meanwhile {row['during_restart']}; "
          f"{row['spooled_then_flushed']}/{row['spooled_at_restore']} spooled flushed, "
          f"{row['missing']} missing")
    return row


# -- 4. orphaned workers --------------------------------------------------------------------

def alive(proc: psutil.Process) -> bool:
    """``proc`` runs (a zombie does not)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (bind with SO_REUSEADDR, as servers do)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True


def orphans(fs: Flagship, tmp: Path, body: bytes) -> dict:
    """``kill -9`` of bentoml serve's process group under load; a new serve on its port."""
    served = Served(fs, tmp, "orphans")
    load = Load(served.server.port, body)
    row: dict = {"scenario": "kill -9 of the process group"}
    workers = served.workers()
    try:
        load.wait_for(100)
        load.phase = "fault"
        os.killpg(served.server.proc.pid, signal.SIGKILL)
        t = time.monotonic()
        served.server.proc.wait(10)
        gone = free = None
        while time.monotonic() - t < 60 and (gone is None or free is None):
            if gone is None and not any(alive(p) for p in workers):
                gone = time.monotonic() - t
            if free is None and port_free(served.server.port):
                free = time.monotonic() - t
            time.sleep(0.05)
        row["workers_gone_after_s"] = round(gone, 2) if gone is not None else None
        row["port_free_after_s"] = round(free, 2) if free is not None else None
        row["answers_after_kill"] = load.statuses("fault")
    finally:
        load.close()
        for proc in workers:  # an orphan outliving the measurement
            with suppress(psutil.NoSuchProcess):
                proc.kill()
    row.update(settle(served, {rid for _, rid in load.acked}, timeout=10))
    row["log"] = log_lines(served.server.output())
    t = time.monotonic()
    try:
        again = Served(fs, tmp, "orphans-again", port=served.server.port)
    except (RuntimeError, TimeoutError) as exc:
        row["restart_on_port"] = False
        row["restart_error"] = str(exc)[-600:]
    else:
        row["restart_on_port"] = True
        row["restart_ready_after_s"] = round(time.monotonic() - t, 1)
        with suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", again.server.port, timeout=30)
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            row["restart_predict_status"] = conn.getresponse().status
            conn.close()
        again.stop()
    print(f"  orphans: workers gone after {row['workers_gone_after_s']}s, port free after "
          f"{row['port_free_after_s']}s, new serve on the port: {row['restart_on_port']}")
    return row


# -- the report -----------------------------------------------------------------------------

def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("—" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def statuses_md(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def markdown(results: dict, info: dict, command: str) -> str:
    """bench/results/probe.md."""
    md = ["# The served flagship probed (issue 13), re-measured\n",
          f"`{command}`; one worker, SQLite audit database, {CLIENTS} clients posting "
          "1-row /predict as the load. Counts are the point, not latency: the machine is "
          "shared (load average below).\n", machine_md(info)]
    f = results.get("fuzz")
    if f:
        md.append("\n## 1. Fuzzing (schemathesis, response-schema check on)\n")
        if f.get("measured"):
            md.append(table(
                ["cases", "operations tested", "failures", "errors", "5xx (access log)",
                 "responses logged", "max examples / op", "seconds"],
                [[f["cases"], f"{f['operations_tested']}/{f['operations_total']}", f["failures"],
                  f["errors"], f["status_5xx"], f["responses_logged"], f["max_examples"],
                  f["seconds"]]]))
            md.append(f"\nStatuses in the server's access log: {statuses_md(f['statuses'])}. "
                      f"Checks: `{FUZZ_CHECKS}`, seed {SEED}."
                      + (" Fewer than the 10,000 cases asked for." if f["cases"] < 10_000
                         else "") + "\n")
        else:
            md.append(f"not measured: {f['why']}\n")
    faults = results.get("faults")
    if faults:
        md.append("\n## 2. Acknowledged vs. recorded under each fault\n")
        rows = []
        for r in faults:
            if r.get("measured") is False:
                rows.append([r["scenario"], f"not measured: {r['why']}"] + [None] * 8)
                continue
            during = statuses_md(r["during_fault"])
            if r.get("during_chmod"):
                during = f"chmod alone: {statuses_md(r['during_chmod'])}; then {during}"
            rows.append([r["scenario"], r["fault"], r["acknowledged"], r["in_database"],
                         r["in_spool_only"], r["missing"], during,
                         r["spooled_during_fault"], r["log"]["workers_started"],
                         r["log"]["errors"]])
        md.append(table(["scenario", "fault", "acknowledged", "in the database",
                         "only in the spool", "missing", "answers during the fault",
                         "spool entries at the end of the fault", "workers started",
                         "ERROR log lines"], rows))
        md.append("\nFor `rm -r`, acknowledged counts the requests started after the removal "
                  "(those before were in the file removed). `sigkill` restart times (s from "
                  "each kill to the next 200): "
                  + ", ".join(str(r.get("answers_again_after_s")) for r in faults
                              if r["scenario"] == "sigkill") + ".\n")
        for r in faults:
            if r.get("log", {}).get("said"):
                md.append(f"\n`{r['scenario']}` log: " + "; ".join(
                    f"`{line}`" for line in r["log"]["said"][:3]) + "\n")
    o = results.get("restart")
    if o:
        md.append("\n## 3. Restart during an outage (database read-only, worker SIGKILLed)\n")
        md.append(table(
            ["new worker starts", "seconds to a 200", "answers meanwhile", "spooled at restore",
             "flushed once writable", "acknowledged", "missing", "workers started (log)"],
            [[o["new_worker_started"], o["answers_200_after_s"], statuses_md(o["during_restart"]),
              o["spooled_at_restore"], o["spooled_then_flushed"], o["acknowledged"],
              o["missing"], o["log"]["workers_started"]]]))
        if o["log"]["said"]:
            md.append("\nIts log (both workers): " + "; ".join(
                f"`{line}`" for line in o["log"]["said"][:6]) + "\n")
    k = results.get("orphans")
    if k:
        md.append("\n## 4. Orphaned workers (`kill -9` of bentoml serve's process group)\n")
        md.append(table(
            ["workers gone after (s)", "port free after (s)", "new serve on the port starts",
             "ready after (s)", "its /predict", "acknowledged", "missing"],
            [[k["workers_gone_after_s"], k["port_free_after_s"], k["restart_on_port"],
              k.get("restart_ready_after_s"), k.get("restart_predict_status"),
              k["acknowledged"], k["missing"]]]))
    return re.sub(r"/tmp/nb2prod-bench-[^/]+", "$TMP", "".join(md))


SECTIONS = ("fuzz", "faults", "restart", "orphans")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few cases, short faults")
    ap.add_argument("--examples", type=int, help=f"schemathesis --max-examples per operation "
                    f"(default {FUZZ_EXAMPLES}; quick 20)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--logs", type=Path, metavar="DIR",
                    help="copy every server's log there (the temporary directory goes)")
    add_reuse_option(ap)
    args = ap.parse_args()
    examples = args.examples or (20 if args.quick else FUZZ_EXAMPLES)
    hold_s, kills = (1.5, 1) if args.quick else (4.0, 3)
    load = os.getloadavg()
    results: dict = {}
    with workdir() as tmp_name:
        tmp = Path(tmp_name)
        fs = Flagship(tmp, args.reuse_build)
        body = json.dumps({"records": fs.contract["examples"][:1]}).encode()
        sections = args.only or SECTIONS
        if "fuzz" in sections:
            print("1. fuzzing")
            results["fuzz"] = fuzz(fs, tmp, examples)
        if "faults" in sections:
            print("2. faults under load")
            results["faults"] = [
                fault_rm(fs, tmp, body, hold_s, spool_beside=False),
                fault_rm(fs, tmp, body, hold_s, spool_beside=True),
                fault_read_only(fs, tmp, body, hold_s),
                fault_sigkill(fs, tmp, body, kills),
                fault_disk_full(fs, tmp, body, hold_s, spool_on_it=False),
                fault_disk_full(fs, tmp, body, hold_s, spool_on_it=True)]
        if "restart" in sections:
            print("3. restart during an outage")
            results["restart"] = restart_in_outage(fs, tmp, body, hold_s)
        if "orphans" in sections:
            print("4. orphaned workers")
            results["orphans"] = orphans(fs, tmp, body)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, args.logs / log.name)
    info = machine(load)
    command = "python bench/probe.py" + (" --quick" if args.quick else "") + (
        f" --examples {args.examples}" if args.examples else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    md = markdown(results, info, command)
    print("\n" + md)
    write("probe", {"machine": info, "command": command, "clients": CLIENTS,
                    "hold_s": hold_s, **results}, md)


if __name__ == "__main__":
    main()
