"""nb2prod's own per-request work, in process: ``Serving.apredict`` / ``predict`` timed.

    .venv/bin/python bench/steps.py [--quick] [--rounds R] [--calls N] [--against REV]
                                    [--reuse-build DIR | --build DIR] [--profile CASE]

No HTTP: the flagship (notebooks/breast_cancer.ipynb, built by ``nb2prod build`` into a
temporary BENTOML_HOME, or ``--reuse-build`` / ``--build`` as below) is opened by a
worker process the way ``bentoml serve`` opens it: its generated service.py imported,
the service class instantiated (``make_service``'s ``__init__``: ``open_serving``, the
garbage collector's ``gc.freeze``), defaults on: SQLite audit log in a temporary
directory, drift, the compiled checks, the ``@n2p.check`` and guardrail, the model's
deadline. The worker then times ``serving.apredict`` (awaited on an event loop, as the
service answers a small body) and ``serving.predict`` (as in a worker thread, a large
body) on 1-row and 100-row requests (bench/common.py ``records``): one call at a time,
``--calls`` calls per case per round.

``--against REV`` runs a second worker with nb2prod as it was at git revision REV (a
temporary ``git worktree``) on the *same* build: only the serving code differs. Rounds
are interleaved (every round runs every case in both workers, the order rotating) so
the machine's noise hits both alike; the figures are medians over every call of every
round, and the ratio is this checkout's median over REV's. Before timing, each worker's
answers and its audit row for the same requests are compared (request id, time and
latency aside): a speed-up that changed what a user sees fails the run.

``--build DIR`` uses the build in DIR (DIR/build, DIR/home, as ``--reuse-build`` leaves
them) as it is, even when nb2prod's source has changed since: for A/B runs of serving
code. ``--profile CASE`` (e.g. ``apredict-1``) runs cProfile in this checkout's worker
over that case and prints the top functions instead of timing.

Writes bench/results/steps.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Flagship, add_reuse_option, machine, machine_md, records, write

CASES = [("apredict", 1), ("apredict", 100), ("predict", 1), ("predict", 100)]
SELF = "this checkout"


# ---- the worker: one process, one nb2prod, one opened Serving ---------------------------


def serve_in_process(build: Path):
    """The build's service class instantiated as a BentoML worker does; its Serving."""
    sys.path.insert(0, str(build))
    spec = importlib.util.spec_from_file_location("service", build / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["service"] = module
    spec.loader.exec_module(module)
    import bentoml

    svc = next(v for v in vars(module).values() if isinstance(v, bentoml.Service))
    return svc.inner().serving


def audit_row(db: Path) -> dict:
    """The newest audit row, without what differs call to call."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute(
            "SELECT * FROM nb2prod_audit ORDER BY created_at DESC LIMIT 1").fetchone())
    for key in ("request_id", "created_at", "latency_ms"):
        row.pop(key)
    return row


def worker(build: Path, db: Path) -> None:
    """Answer the parent's JSON lines on stdin: ``check`` (answers and audit rows),
    ``time`` (seconds per call) or ``profile`` (cProfile's top functions)."""
    import asyncio

    serving = serve_in_process(build)
    loop = asyncio.new_event_loop()

    # The model function's own time, per call (a deadline runs it in another thread):
    # what is left of a call is nb2prod's (and the guardrail's, the checks') work.
    marked = serving.predictor.marked
    model, in_model = marked.model, [0.0]

    @functools.wraps(model)
    def timed_model(*args):
        t = time.perf_counter()
        try:
            return model(*args)
        finally:
            in_model[0] += time.perf_counter() - t

    marked.model = timed_model

    def run(case: str, rows: list[dict], calls: int) -> tuple[list[float], list[float]]:
        """Seconds per call, whole and without the model function's time."""
        whole, own = [], []

        def took(t: float, before: float) -> None:
            whole.append(time.perf_counter() - t)
            own.append(whole[-1] - (in_model[0] - before))

        if case == "apredict":
            async def many() -> None:
                for _ in range(calls):
                    before, t = in_model[0], time.perf_counter()
                    await serving.apredict(rows)
                    took(t, before)
            loop.run_until_complete(many())
        else:
            for _ in range(calls):
                before, t = in_model[0], time.perf_counter()
                serving.predict(rows)
                took(t, before)
        return whole, own

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but our replies on the pipe
    for line in sys.stdin:
        ask = json.loads(line)
        rows = ask["records"]
        if ask["do"] == "check":
            answer = serving.predict(rows)
            answer.pop("request_id")
            reply = {"answer": answer, "audit": audit_row(db)}
        elif ask["do"] == "time":
            whole, own = run(ask["case"], rows, ask["calls"])
            reply = {"whole": whole, "own": own}
        else:
            import cProfile
            import io
            import pstats

            run(ask["case"], rows, 50)  # warm
            prof = cProfile.Profile()
            prof.enable()
            run(ask["case"], rows, ask["calls"])
            prof.disable()
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text).strip_dirs()
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
            for name in ask.get("callers", []):
                stats.print_callers(name)
            reply = {"profile": text.getvalue()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class Worker:
    """A worker process running the nb2prod in ``source`` on ``build``."""

    def __init__(self, name: str, source: Path, build: Path, env: dict, tmp: Path):
        where = tmp / name.replace(" ", "-").replace("@", "-")
        where.mkdir()
        db = where / "audit.db"
        self.name, self.log = name, where / "worker.log"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(build), str(db)], cwd=where,
            env={**env, "PYTHONPATH": str(source), "NB2PROD_AUDIT_URL": f"sqlite:///{db}"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "wb"),
            text=True)

    def ask(self, **what) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(what) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited ({self.proc.wait()}):\n"
                               f"{self.log.read_text()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ---- the parent: build, workers, interleaved rounds, results ----------------------------


def ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 4)


def report(results: dict, names: list[str], kind: str) -> str:
    """One markdown table of the ``kind`` ("own" or "whole") figures."""
    two = len(names) == 2
    lines = ["| case | " + " | ".join(f"{n}: p50 (p90) ms" for n in names)
             + (" | ratio p50 |" if two else " |"),
             "|" + "---|" * (len(names) + 1 + two)]
    for case, per in results["cases"].items():
        cells = [f"{per[n][kind]['p50_ms']:.3f} ({per[n][kind]['p90_ms']:.3f})" for n in names]
        ratio = f" {per['ratio'][kind]:.2f} |" if two else ""
        lines.append(f"| {case} | " + " | ".join(cells) + " |" + ratio)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 50 calls")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 12; quick 3)")
    ap.add_argument("--calls", type=int, help="calls per case per round (default 200; quick 50)")
    ap.add_argument("--against", metavar="REV",
                    help="also time nb2prod at git revision REV on the same build")
    ap.add_argument("--build", type=Path, metavar="DIR",
                    help="use the build in DIR (DIR/build, DIR/home) as it is")
    ap.add_argument("--profile", metavar="CASE", help="cProfile this case (e.g. apredict-1)")
    ap.add_argument("--callers", nargs="*", default=[], metavar="FUNCTION",
                    help="with --profile: also print who calls these (pstats patterns)")
    add_reuse_option(ap)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)
    rounds = args.rounds or (3 if args.quick else 12)
    calls = args.calls or (50 if args.quick else 200)
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="nb2prod-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.build:
            base = args.build.resolve()
            env = {**os.environ, "BENTOML_HOME": str(base / "home"),
                   "BENTOML_DO_NOT_TRACK": "true"}
            build, contract = base / "build", json.loads(next(
                (base / "home").glob("models/*/*/contract.json")).read_text())
        else:
            flagship = Flagship(tmp, args.reuse_build)
            env, build, contract = flagship.env, flagship.out, flagship.contract
        bodies = {n: records(contract, n) for n in (1, 100)}
        sources = {SELF: ROOT}
        worktree = tmp / "against"
        if args.against and not args.profile:
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree),
                            args.against], cwd=ROOT, check=True)
            sources[f"nb2prod@{args.against}"] = worktree
        workers: dict[str, Worker] = {}
        try:
            workers = {n: Worker(n, s, build, env, tmp) for n, s in sources.items()}
            if args.profile:
                case, rows = args.profile.rsplit("-", 1)
                print(workers[SELF].ask(do="profile", case=case, records=bodies[int(rows)],
                                        calls=calls * 5, callers=args.callers)["profile"])
                return
            checks = {n: [w.ask(do="check", records=bodies[size]) for size in (1, 100)]
                      for n, w in workers.items()}
            first = checks[SELF]
            for n, got in checks.items():
                if got != first:
                    sys.exit(f"{n} answers or audits differently from {SELF}:\n"
                             f"{json.dumps(got)[:2000]}\nvs.\n{json.dumps(first)[:2000]}")
            print(f"answers and audit rows agree ({', '.join(checks)})")
            for w in workers.values():  # warm-up, untimed
                for case, size in CASES:
                    w.ask(do="time", case=case, records=bodies[size], calls=30)
            times: dict[tuple, list[float]] = {}
            order = [(c, s, n) for c, s in CASES for n in workers]
            for r in range(rounds):
                shift = r % len(order)
                for case, size, name in order[shift:] + order[:shift]:
                    got = workers[name].ask(do="time", case=case, records=bodies[size],
                                            calls=calls)
                    for kind in ("own", "whole"):
                        times.setdefault((case, size, name, kind), []).extend(got[kind])
                print(f"round {r + 1}/{rounds}, own ms so far: " + ", ".join(
                    f"{c}-{s} {n} {ms(times[(c, s, n, 'own')]):.3f}"
                    for c, s in CASES for n in workers), flush=True)
        finally:
            for w in workers.values():
                w.close()
            if worktree.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)

    names = list(workers)
    results: dict = {"machine": machine(load), "rounds": rounds, "calls_per_round": calls,
                     "against": args.against, "cases": {}}
    for case, size in CASES:
        per: dict = {}
        for n in names:
            per[n] = {}
            for kind in ("own", "whole"):
                t = sorted(times[(case, size, n, kind)])
                per[n][kind] = {"p50_ms": ms(t), "p90_ms": round(1000 * t[int(0.9 * len(t))], 4),
                                "calls": len(t)}
        if len(names) == 2:
            per["ratio"] = {k: round(per[names[0]][k]["p50_ms"] / per[names[1]][k]["p50_ms"], 3)
                            for k in ("own", "whole")}
        results["cases"][f"{case}-{size}"] = per
    own, whole = report(results, names, "own"), report(results, names, "whole")
    print(f"\nnb2prod's own (the call without the model function's time):\n{own}\n"
          f"\nwhole calls:\n{whole}")
    write("steps", results, (
        "# nb2prod's own steps, in process (bench/steps.py)\n\n"
        f"`Serving.apredict` / `predict` of the flagship, defaults on; {rounds} interleaved "
        f"rounds of {calls} calls per case; medians (p90) in ms"
        + (f"; ratio = {SELF} / nb2prod@{args.against}" if args.against else "")
        + ".\n\n" + machine_md(results["machine"])
        + "\n## nb2prod's own: each call less the model function's time\n\n" + own
        + "\n\n## whole calls (the model's `predict_proba` included)\n\n" + whole + "\n"))


if __name__ == "__main__":
    main()
