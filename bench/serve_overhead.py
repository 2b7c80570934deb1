"""Serving overhead: the nb2prod-built flagship service vs. a bare BentoML service.

    .venv/bin/python bench/serve_overhead.py [--quick] [--seconds S] [--rounds R] [--against REV]

Builds notebooks/breast_cancer.ipynb with ``nb2prod build`` into a temporary
BENTOML_HOME and writes a hand-written bare BentoML service that loads the same
``model.joblib`` and answers the same JSON. The build is served four times, one
server per configuration (``CONFIGS``): ``nb2prod`` with everything on as deployed by
default (SQLite audit log, drift, metrics, the model's deadline), then with the audit
log off, drift off, both off, the deadline off, and CPU pinning off, so each feature's
cost shows. All seven servers run at once on free
127.0.0.1 ports; every nb2prod one must agree with bare on a 100-row payload. Then
p50/p99 latency and throughput are measured for 1- and 100-row payloads at 1 and 8
concurrent clients. Bursts are interleaved (every round runs each case on every
server, in an order that rotates) so machine noise hits all alike. Targets, for the
full-featured ``nb2prod`` only: p50 <= 1.2x bare and throughput >= 0.8x bare.
``--against REV`` also builds the flagship with nb2prod as it was at git revision REV
(a temporary worktree) and serves that bento too, defaults on, in the same interleaved
rounds: a change's request-path cost shows as two ratios to the same bare service.
Writes bench/results/serve_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import BARE_SERVICE, RESULTS, ROOT, build, machine, payloads, pct

from nb2prod.serve import Server

P50_MAX, RPS_MIN = 1.2, 0.8
CASES = [(1, 1), (1, 8), (100, 1), (100, 8)]  # (rows per request, concurrent clients)
HEADERS = {"Content-Type": "application/json"}
# nb2prod configurations: environment on top of the defaults. Metrics cannot be switched
# off, so every configuration has them. Each server audits into its own SQLite file.
CONFIGS = {
    "nb2prod": {},
    "no-audit": {"NB2PROD_AUDIT_URL": "off"},
    "no-drift": {"NB2PROD_DRIFT": "off"},
    "no-audit-no-drift": {"NB2PROD_AUDIT_URL": "off", "NB2PROD_DRIFT": "off"},
    "no-deadline": {"NB2PROD_TIMEOUT_S": "none"},  # the model called inline, no worker thread
    "no-cpu-pin": {"NB2PROD_CPU_PIN": "off"},  # loop and model threads left to the scheduler
}
FULL = "nb2prod"  # the configuration the targets apply to

def post(conn: http.client.HTTPConnection, body: bytes) -> bytes:
    """POST /predict on a persistent connection; raise on anything but 200."""
    conn.request("POST", "/predict", body, HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
    return data


def refresh(conn: http.client.HTTPConnection) -> None:
    """An untimed GET so an idle keep-alive connection closed by the server is reopened."""
    for attempt in (0, 1):
        try:
            conn.request("GET", "/readyz")
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            conn.close()
            if attempt:
                raise


def burst(conns: list, body: bytes, seconds: float) -> tuple[list[float], float]:
    """Every connection posts ``body`` in a loop for ``seconds``; (latencies, elapsed)."""
    lats: list[list[float]] = [[] for _ in conns]
    errors: list[BaseException] = []
    gate = threading.Barrier(len(conns) + 1)

    def client(i: int) -> None:
        try:
            refresh(conns[i])
        except BaseException as exc:
            errors.append(exc)
        gate.wait()
        if errors:
            return
        try:
            end = time.perf_counter() + seconds
            while (t := time.perf_counter()) < end:
                post(conns[i], body)
                lats[i].append(time.perf_counter() - t)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"request failed during a burst: {errors[0]}")
    return [x for part in lats for x in part], elapsed


def verify(conns: dict, body: bytes) -> None:
    """Abort unless every nb2prod server gives bare's answers for the 100-row payload."""
    got = {name: json.loads(post(c[0], body))["predictions"] for name, c in conns.items()}
    b = got["bare"]
    for name in CONFIGS:
        a = got[name]
        bad = [i for i, (x, y) in enumerate(zip(a, b))
               if x["source"] != "model"
               or x["prediction"]["diagnosis"] != y["prediction"]["diagnosis"]
               or abs(x["prediction"]["probability_malignant"]
                      - y["prediction"]["probability_malignant"]) > 1e-4]
        if len(a) != len(b) or bad:
            sys.exit(f"ABORT: {name} and bare disagree (lengths {len(a)}/{len(b)}, rows "
                     f"{bad[:10]}); first: {name}={a[bad[0]] if bad else None} "
                     f"bare={b[bad[0]] if bad else None}")
    print(f"verified: {', '.join(CONFIGS)} and bare agree on all {len(b)} rows "
          "(all answered by the model)")


def _ratios(row: dict, name: str) -> str:
    """``p50 ratio | req/s ratio`` cells; the targeted configuration says pass or FAIL."""
    if name == "bare":
        return "1 | 1"
    ratio = row["ratios"][name]
    if name != FULL:
        return f"{ratio['p50']:.3f} | {ratio['rps']:.3f}"
    return (f"{ratio['p50']:.3f} {'pass' if row['p50_pass'] else 'FAIL'} "
            f"| {ratio['rps']:.3f} {'pass' if row['rps_pass'] else 'FAIL'}")


def report(rows: list[dict], info: dict, settings: dict) -> str:
    """The markdown tables (also printed) and the JSON/MD result files."""
    head = ("| rows | clients | server | p50 | p99 | req/s | p50 / bare | req/s / bare |\n|"
            + "---|" * 8)
    lines = [head]
    for r in rows:
        for name in [*CONFIGS, "bare"]:
            fig = r["servers"][name]
            lines.append(f"| {r['rows']} | {r['clients']} | {name} | {fig['p50_ms']:.2f} ms "
                         f"| {fig['p99_ms']:.2f} ms | {fig['rps']:.1f} | {_ratios(r, name)} |")
    table = "\n".join(lines)
    cost = ("| rows | clients | " + " | ".join(CONFIGS) + " |\n|" + "---|" * (2 + len(CONFIGS))
            + "".join(f"\n| {r['rows']} | {r['clients']} | " + " | ".join(
                f"{r['ratios'][n]['p50']:.2f} / {r['ratios'][n]['rps']:.2f}" for n in CONFIGS)
                + " |" for r in rows))
    ok = all(r["p50_pass"] and r["rps_pass"] for r in rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_overhead.json").write_text(json.dumps(
        {"machine": info, "settings": settings, "configs": CONFIGS, "targets": {
            "applies_to": FULL, "p50_ratio_max": P50_MAX, "rps_ratio_min": RPS_MIN},
         "cases": rows, "all_pass": ok}, indent=1) + "\n")
    (RESULTS / "serve_overhead.md").write_text(
        "# Serving overhead: nb2prod vs. bare BentoML\n\n"
        f"Command: `.venv/bin/python bench/serve_overhead.py{' --quick' if settings['quick'] else ''}`\n\n"
        f"- date: {info['date']}\n- nproc: {info['nproc']} ({info['cpu']})\n"
        f"- load average at start (1/5/15 min): {info['loadavg_at_start']}\n"
        f"- python: {info['python']}, bentoml {info['bentoml']}, {info['platform']}\n"
        f"- model: {settings['model_tag']}, bento: {settings['bento_tag']}\n"
        f"- servers: `nb2prod` = the build as deployed by default (SQLite audit log with "
        f"NB2PROD_AUDIT_SYNC=NORMAL, drift on, Prometheus metrics on, model deadline 2 s); `no-audit` "
        f"NB2PROD_AUDIT_URL=off; `no-drift` NB2PROD_DRIFT=off; `no-audit-no-drift` both; "
        f"`no-deadline` NB2PROD_TIMEOUT_S=none (the model runs in the request's thread); `no-cpu-pin` NB2PROD_CPU_PIN=off; "
        f"`bare` a hand-written BentoML service (same model, same JSON)\n"
        f"- method: {settings['rounds']} interleaved rounds x {settings['seconds']}s bursts per "
        "server and case, order rotating; one persistent HTTP/1.1 connection per client "
        "thread; all servers up throughout on 127.0.0.1\n\n"
        f"{table}\n\nOverall: **{'PASS' if ok else 'FAIL'}** (targets, for `{FULL}`: "
        f"p50 <= {P50_MAX}x bare, throughput >= {RPS_MIN}x bare)\n\n"
        "## What each feature costs\n\np50 ratio / throughput ratio vs. bare, per "
        f"configuration (1.00 / 1.00 = free):\n\n{cost}\n")
    return table + f"\n\n{cost}\n\noverall: {'PASS' if ok else 'FAIL'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of short bursts")
    ap.add_argument("--seconds", type=float, help="seconds per burst (default 1.2; quick 0.3)")
    # 10 by default: on a noisy 2-core machine, 6 left 1-row medians 0.05 apart run to run
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 10; quick 2)")
    ap.add_argument("--against", metavar="REV", help="also serve the flagship as built by "
                    "nb2prod at git revision REV (defaults on), in the same rounds")
    args = ap.parse_args()
    seconds = args.seconds or (0.3 if args.quick else 1.2)
    rounds = args.rounds or (2 if args.quick else 10)
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="nb2prod-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "BENTOML_HOME": str(tmp / "home"), "BENTOML_DO_NOT_TRACK": "true"}
        manifest = build(tmp / "home", tmp / "build", env)
        version = manifest["model_tag"].split(":", 1)[1]
        contract = json.loads((tmp / "home" / "models" / "breast_cancer" / version
                               / "contract.json").read_text())
        bodies = payloads(contract)
        bentos = dict.fromkeys(CONFIGS, manifest["bento_tag"])
        if args.against:
            label = f"nb2prod@{args.against}"
            worktree = tmp / "against"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree),
                            args.against], cwd=ROOT, check=True)
            try:
                bentos[label] = build(tmp / "home", tmp / "build-against", env,
                                      source=worktree)["bento_tag"]
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
            CONFIGS[label] = {}
        (tmp / "bare").mkdir()
        (tmp / "bare" / "service.py").write_text(BARE_SERVICE.format(tag=manifest["model_tag"]))

        servers: dict[str, Server] = {}
        try:
            for name, extra in CONFIGS.items():
                (tmp / name).mkdir()
                servers[name] = Server(
                    bentos[name], cwd=tmp / name, log=tmp / f"{name}.log",
                    # its own TMPDIR: its worker claims a CPU as if alone (common.Flagship)
                    env={**env, "NB2PROD_AUDIT_URL": f"sqlite:///{tmp / name / 'audit.db'}",
                         "TMPDIR": str(tmp / name), **extra})
            servers["bare"] = Server("service:Bare", cwd=tmp / "bare", env=env,
                                     log=tmp / "bare.log")
            for s in servers.values():
                s.wait_ready()
            print("serving: " + ", ".join(f"{n} on 127.0.0.1:{s.port}" for n, s in servers.items()))
            conns = {n: [http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
                         for _ in range(max(c for _, c in CASES))] for n, s in servers.items()}
            verify(conns, bodies[100])

            for name in conns:  # warm-up: untimed bursts of every case
                for size, clients in CASES:
                    burst(conns[name][:clients], bodies[size], 0.2 if args.quick else 0.6)

            samples = {(case, n): ([], 0.0) for case in CASES for n in conns}
            for r in range(rounds):
                print(f"round {r + 1}/{rounds} …", flush=True)
                for k, case in enumerate(CASES):
                    names = list(conns)
                    shift = (r + k) % len(names)
                    for name in names[shift:] + names[:shift]:
                        lats, elapsed = burst(conns[name][:case[1]], bodies[case[0]], seconds)
                        old, t = samples[case, name]
                        samples[case, name] = (old + lats, t + elapsed)
            for c in (c for cs in conns.values() for c in cs):
                c.close()
        finally:
            for s in servers.values():
                s.stop()

    rows = []
    for size, clients in CASES:
        fig = {}
        for name in [*CONFIGS, "bare"]:
            lats, elapsed = samples[(size, clients), name]
            fig[name] = {"p50_ms": pct(lats, 0.5), "p99_ms": pct(lats, 0.99),
                         "rps": len(lats) / elapsed, "requests": len(lats)}
        ratios = {name: {"p50": fig[name]["p50_ms"] / fig["bare"]["p50_ms"],
                         "rps": fig[name]["rps"] / fig["bare"]["rps"]} for name in CONFIGS}
        rows.append({"rows": size, "clients": clients, "servers": fig, "ratios": ratios,
                     "p50_pass": ratios[FULL]["p50"] <= P50_MAX,
                     "rps_pass": ratios[FULL]["rps"] >= RPS_MIN})
    settings = {"quick": args.quick, "seconds": seconds, "rounds": rounds,
                "model_tag": manifest["model_tag"], "bento_tag": manifest["bento_tag"]}
    print("\n" + report(rows, machine(load), settings))
    print(f"\nwrote {RESULTS / 'serve_overhead.json'} and {RESULTS / 'serve_overhead.md'}")


if __name__ == "__main__":
    main()
