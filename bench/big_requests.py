"""Big requests: what a 10,000-row request costs, and whether small ones queue behind it.

    .venv/bin/python bench/big_requests.py [--quick] [--rows N] [--seconds S] [--rounds R]

Builds the flagship (notebooks/breast_cancer.ipynb) into a temporary BENTOML_HOME and
serves it with ``bentoml serve``, defaults on (SQLite audit log, drift, metrics, checks,
deadline), beside the bare BentoML service of bench/common.py for reference.

1. **Cost.** One client sends the same 10,000-row request over and over (bench/load.py);
   the served median is set against the same rows done in this process with nothing
   around them: ``pd.DataFrame(records)`` plus the model's ``predict_proba`` (median of
   several). Target: served <= 2x in-process.
2. **Mixed load.** 4 clients send 1-row requests alone, then the same 4 beside 4 clients
   sending 10,000-row requests, in alternating rounds. Target: the 1-row p99 under the
   mixed load within 5x of its p99 alone.

Writes bench/results/big_requests.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from common import (
    Flagship,
    add_reuse_option,
    machine,
    machine_md,
    pct,
    records,
    wait_for,
    workdir,
    write,
)
from load import Generator, Group, request

from nb2prod.serve import Server

COST_MAX, MIXED_P99_MAX = 2.0, 5.0
BIG_CLIENTS, SMALL_CLIENTS = 4, 4


def in_process(flagship: Flagship, rows: list[dict], repeat: int) -> list[float]:
    """Seconds for ``pd.DataFrame(rows)`` + ``predict_proba``, ``repeat`` times."""
    import joblib
    import pandas as pd

    model = joblib.load(flagship.model_file)
    model.predict_proba(pd.DataFrame(rows[:10]))  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        model.predict_proba(pd.DataFrame(rows))
        times.append(time.perf_counter() - t)
    return times


def tables(rows: int, local_ms: float, runs: int, served: dict, fig: dict, p99_ratio: float,
           cost_ok: bool, mixed_ok: bool) -> str:
    """The two markdown tables (cost; 1-row requests alone and mixed) and the verdicts."""
    verdict = {True: "pass", False: "FAIL"}
    cost = [f"| {rows}-row request | median | requests | / in-process |", "|---|---|---|---|",
            f"| in process: pd.DataFrame + predict_proba | {local_ms:.1f} ms | {runs} | 1 |"]
    for n, v in served.items():
        mark = f" {verdict[cost_ok]}" if n == "nb2prod" else ""
        cost.append(f"| served by {n} | {v['median_ms']:.1f} ms | {v['requests']} "
                    f"| {v['ratio']:.2f}{mark} |")
    mixed = ["| nb2prod | p50 | p99 | req/s | requests |", "|---|---|---|---|---|"]
    labels = {"alone": f"1-row, {SMALL_CLIENTS} clients alone",
              "mixed": f"1-row, beside {BIG_CLIENTS} big clients",
              "big": f"{rows}-row, the {BIG_CLIENTS} big clients meanwhile"}
    for key, label in labels.items():
        f = fig[key]
        mixed.append(f"| {label} | {f['p50_ms']:.2f} ms | {f['p99_ms']:.2f} ms "
                     f"| {f['rps']:.2f} | {f['requests']} |")
    return ("\n".join(cost) + "\n\n" + "\n".join(mixed)
            + f"\n\n1-row p99 mixed / alone: {p99_ratio:.2f} {verdict[mixed_ok]} (target <= "
            f"{MIXED_P99_MAX}); p50 mixed / alone: "
            f"{fig['mixed']['p50_ms'] / fig['alone']['p50_ms']:.2f}; {rows}-row served / in "
            f"process: {served['nb2prod']['ratio']:.2f} {verdict[cost_ok]} (target <= {COST_MAX})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: short bursts, 1 round")
    ap.add_argument("--rows", type=int, default=10_000, help="rows in a big request")
    ap.add_argument("--seconds", type=float, help="seconds per burst (default 4; quick 2)")
    ap.add_argument("--rounds", type=int, help="alternating mixed-load rounds (default 4; quick 1)")
    add_reuse_option(ap)
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    rounds = args.rounds or (1 if args.quick else 4)
    load = os.getloadavg()

    with workdir() as tmp:
        tmp = Path(tmp)
        flagship = Flagship(tmp, args.reuse_build)
        big_rows = records(flagship.contract, args.rows)
        big = json.dumps({"records": big_rows}).encode()
        small = json.dumps({"records": flagship.contract["examples"][:1]}).encode()
        print(f"a {args.rows}-row request is {len(big) / 1e6:.1f} MB")
        # a big request must fit under the body limit (NB2PROD_MAX_BODY_BYTES, 10 MiB)
        limit = {"NB2PROD_MAX_BODY_BYTES": str(max(len(big) + 1024, 10 * 1024 * 1024))}
        servers = {"nb2prod": flagship.nb2prod("nb2prod", limit),
                   "bare": Server("service:Bare", cwd=flagship.bare(), env=flagship.env,
                                  log=tmp / "bare.log")}
        cost: dict = {}
        mixed: dict = {"alone": ([], 0.0), "mixed": ([], 0.0), "big": ([], 0.0)}
        try:
            for s in servers.values():
                wait_for(s)
            with Generator() as gen:
                raw_big, raw_small = request("/predict", big), request("/predict", small)
                for name, s in servers.items():
                    gen.burst(s.port, [Group("w", 1, raw_big)], 0.1)  # warm-up: one request
                    cost[name] = gen.burst(s.port, [Group("b", 1, raw_big)], seconds)[
                        "b"]["latencies"]
                port = servers["nb2prod"].port
                gen.burst(port, [Group("w", SMALL_CLIENTS, raw_small)], 0.5)
                for r in range(rounds):
                    print(f"mixed-load round {r + 1}/{rounds} …", flush=True)
                    out = gen.burst(port, [Group("s", SMALL_CLIENTS, raw_small)], seconds)
                    old, t = mixed["alone"]
                    mixed["alone"] = (old + out["s"]["latencies"], t + out["elapsed"])
                    out = gen.burst(port, [Group("s", SMALL_CLIENTS, raw_small),
                                           Group("b", BIG_CLIENTS, raw_big)], seconds)
                    for key, group in (("mixed", "s"), ("big", "b")):
                        old, t = mixed[key]
                        mixed[key] = (old + out[group]["latencies"], t + out["elapsed"])
        finally:
            for s in servers.values():
                s.stop()
        local = in_process(flagship, big_rows, 3 if args.quick else 7)

    local_ms = 1000 * statistics.median(local)
    served = {n: {"median_ms": 1000 * statistics.median(v), "requests": len(v),
                  "ratio": 1000 * statistics.median(v) / local_ms} for n, v in cost.items()}
    fig = {k: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "requests": len(v),
               "rps": len(v) / t} for k, (v, t) in mixed.items()}
    p99_ratio = fig["mixed"]["p99_ms"] / fig["alone"]["p99_ms"]
    cost_ok, mixed_ok = served["nb2prod"]["ratio"] <= COST_MAX, p99_ratio <= MIXED_P99_MAX
    info = machine(load)
    text = tables(args.rows, local_ms, len(local), served, fig, p99_ratio, cost_ok, mixed_ok)
    print("\n" + text)
    write("big_requests",
          {"machine": info, "settings": {"quick": args.quick, "rows": args.rows,
                                         "seconds": seconds, "rounds": rounds,
                                         "body_bytes": len(big), "server_env": limit,
                                         "model_tag": flagship.model_tag},
           "cost": {"in_process_ms": local_ms, "in_process_runs": len(local), "served": served,
                    "target_ratio_max": COST_MAX, "pass": cost_ok},
           "mixed": {**fig, "p99_ratio": p99_ratio, "target_p99_ratio_max": MIXED_P99_MAX,
                     "pass": mixed_ok}},
          "# Big requests: a 10,000-row request's cost, and small requests beside big ones\n\n"
          f"Command: `.venv/bin/python bench/big_requests.py{' --quick' if args.quick else ''}`\n\n"
          + machine_md(info)
          + f"- model: {flagship.model_tag}; a {args.rows}-row body is {len(big) / 1e6:.1f} MB; "
          f"nb2prod served with its defaults and {limit}\n"
          f"- cost: one client, the same request for {seconds}s per server, median; in "
          "process: `pd.DataFrame(records)` + `predict_proba`, median\n"
          f"- mixed load: {rounds} rounds of {seconds}s, {SMALL_CLIENTS} 1-row clients alone, "
          f"then beside {BIG_CLIENTS} {args.rows}-row clients (bench/load.py)\n\n{text}\n")


if __name__ == "__main__":
    main()
