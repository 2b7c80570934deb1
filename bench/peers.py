"""The flagship served by nb2prod against its peers: bare BentoML, FastAPI, MLflow.

    .venv/bin/python bench/peers.py [--quick] [--seconds S] [--rounds R]

Needs the ``bench`` extra (``pip install -e '.[bench]'``: FastAPI and mlflow-skinny).
Builds notebooks/breast_cancer.ipynb with ``nb2prod build`` into a temporary
BENTOML_HOME, then serves the same ``model.joblib`` four ways, one worker each, on
127.0.0.1:

- ``nb2prod``: ``bentoml serve`` of the build with its defaults (SQLite audit log,
  drift, metrics, the notebook's checks and guardrail, the model's deadline);
- ``bare``: a hand-written BentoML service (bench/common.py ``BARE_SERVICE``);
- ``fastapi``: FastAPI + uvicorn, a pydantic request model, the same JSON answer;
- ``mlflow``: ``mlflow models serve --env-manager local`` of a pyfunc model whose
  artifact is the same model file, answering ``{"predictions": [{diagnosis, ...}]}``.

Every server must agree on a 100-row payload's answers before anything is timed. Then
1-row and 100-row requests at 1 and 8 clients (bench/load.py: one keep-alive connection
per client, the generator in a process of its own), in interleaved rounds whose order
rotates so machine noise hits all alike. Printed and written to bench/results/peers.*:
p50, p99, throughput, and each peer's figures as a ratio nb2prod / peer. Targets (pass or
FAIL): at 1 row and 1 client, nb2prod's p50 <= 1.05x FastAPI's and throughput >= 0.95x;
against bare BentoML in every case, p50 ratio <= 1.0 and throughput ratio >= 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

from common import (
    Flagship,
    Process,
    add_reuse_option,
    answers,
    disagreement,
    machine,
    machine_md,
    pct,
    records,
    wait_for,
    workdir,
    write,
)
from load import Generator, Group, request, selftest

from nb2prod.serve import Server

CASES = [(1, 1), (1, 8), (100, 1), (100, 8)]  # (rows per request, concurrent clients)
PEERS = ["bare", "fastapi", "mlflow"]
FASTAPI_P50_MAX, FASTAPI_RPS_MIN = 1.05, 0.95  # at 1 row, 1 client
BARE_P50_MAX, BARE_RPS_MIN = 1.0, 1.0  # every case

FASTAPI_APP = '''\
"""FastAPI + uvicorn peer for bench/peers.py: same model file, same JSON answer."""
import uuid

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

MODEL = joblib.load({model!r})
VERSION = {tag!r}
app = FastAPI()


class Request(BaseModel):
    records: list[dict[str, float]]


@app.get("/readyz")
def readyz():
    return "ok"


@app.post("/predict")
def predict(req: Request):
    p = MODEL.predict_proba(pd.DataFrame(req.records))[:, 1]
    answers = [{{"prediction": {{"diagnosis": "malignant" if q >= 0.5 else "benign",
                                 "probability_malignant": round(q, 4)}},
                "source": "model", "reason": None}} for q in p.tolist()]
    return {{"request_id": uuid.uuid4().hex, "model_version": VERSION, "predictions": answers}}
'''

MLFLOW_MODEL = '''\
"""MLflow pyfunc peer for bench/peers.py (a model from code): loads the model file."""
import joblib
import mlflow
import numpy as np
import pandas as pd


class BreastCancer(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input, params=None):
        p = self.model.predict_proba(model_input)[:, 1]
        return pd.DataFrame({"diagnosis": np.where(p >= 0.5, "malignant", "benign"),
                             "probability_malignant": p.round(4)})


mlflow.models.set_model(BreastCancer())
'''


class Peer:
    """One running server and how to ask it for a prediction."""

    def __init__(self, server: Server, path: str, wrap: str):
        self.server, self.path, self.wrap = server, path, wrap

    def body(self, rows: list[dict]) -> bytes:
        """The request body for ``rows`` in this server's dialect."""
        return json.dumps({self.wrap: rows}).encode()

    def post(self, rows: list[dict]) -> bytes:
        """One untimed prediction (for checking answers)."""
        req = urllib.request.Request(self.server.url + self.path, self.body(rows),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()


def start(flagship: Flagship, tmp: Path) -> dict[str, Peer]:
    """Start the four servers (not yet ready)."""
    env, py = flagship.env, sys.executable
    (tmp / "fastapi").mkdir()
    (tmp / "fastapi" / "app.py").write_text(
        FASTAPI_APP.format(model=str(flagship.model_file), tag=flagship.model_tag))
    mlflow_dir = save_mlflow_model(flagship, tmp)
    bare_dir = flagship.bare()
    # mlflow starts `uvicorn` by name: this interpreter's bin directory goes first on PATH
    mlflow_env = {**env, "PATH": f"{Path(py).parent}{os.pathsep}{env.get('PATH', '')}",
                  "MLFLOW_TRACKING_URI": f"file://{tmp / 'mlruns'}"}
    return {
        "nb2prod": Peer(flagship.nb2prod("nb2prod"), "/predict", "records"),
        "bare": Peer(Server("service:Bare", cwd=bare_dir, env=env, log=tmp / "bare.log"),
                     "/predict", "records"),
        "fastapi": Peer(Process([py, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                                 "--port", "{port}"], "/readyz", tmp / "fastapi", env,
                                tmp / "fastapi.log"), "/predict", "records"),
        "mlflow": Peer(Process([py, "-m", "mlflow", "models", "serve", "-m", str(mlflow_dir),
                                "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}",
                                "-w", "1"], "/ping", tmp, mlflow_env,
                               tmp / "mlflow.log"), "/invocations", "dataframe_records"),
    }


def save_mlflow_model(flagship: Flagship, tmp: Path) -> Path:
    """An MLflow pyfunc model directory whose artifact is the flagship's model file."""
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow.pyfunc

    warnings.filterwarnings("ignore", message="Add type hints", category=UserWarning)
    code = tmp / "mlflow_model.py"
    code.write_text(MLFLOW_MODEL)
    out = tmp / "mlflow-model"
    mlflow.pyfunc.save_model(path=str(out), python_model=str(code),
                             artifacts={"model": str(flagship.model_file)},
                             pip_requirements=["scikit-learn", "pandas", "joblib"])
    return out


def verify(peers: dict[str, Peer], rows: list[dict]) -> None:
    """Abort unless every server gives bare's answers for ``rows``."""
    got = {name: answers(p.post(rows)) for name, p in peers.items()}
    for name, a in got.items():
        bad = disagreement(a, got["bare"])
        if bad:
            sys.exit(f"ABORT: {name} and bare disagree on rows {bad[:10]} "
                     f"(of {len(got['bare'])}): {name}={a[bad[0]] if bad[0] < len(a) else None}"
                     f" bare={got['bare'][bad[0]] if bad[0] < len(got['bare']) else None}")
    print(f"verified: {', '.join(got)} agree on all {len(rows)} rows")


def figures(lats: list[float], elapsed: float, cpu: float) -> dict:
    """p50, p99 (ms), throughput and count of one server's bursts in one case, and the
    load generator's CPU per request meanwhile (what it took from the server)."""
    return {"p50_ms": pct(lats, 0.5), "p99_ms": pct(lats, 0.99), "rps": len(lats) / elapsed,
            "requests": len(lats), "generator_cpu_us": 1e6 * cpu / len(lats)}


def measure(peers: dict[str, Peer], gen: Generator, bodies: dict, rounds: int,
            seconds: float, warm: float) -> dict:
    """Interleaved rounds of every case on every server;
    {(case, server): (latencies, elapsed, generator CPU)}."""
    raws = {(name, size): request(p.path, bodies[name, size]) for name, p in peers.items()
            for size in {s for s, _ in CASES}}
    for name, p in peers.items():  # warm-up: untimed bursts of every case
        for size, clients in CASES:
            gen.burst(p.server.port, [Group("w", clients, raws[name, size])], warm)
    samples: dict = {(case, n): ([], 0.0, 0.0) for case in CASES for n in peers}
    names = list(peers)
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} …", flush=True)
        for k, case in enumerate(CASES):
            shift = (r + k) % len(names)
            for name in names[shift:] + names[:shift]:
                out = gen.burst(peers[name].server.port,
                                [Group("c", case[1], raws[name, case[0]])], seconds)
                old, t, cpu = samples[case, name]
                samples[case, name] = (old + out["c"]["latencies"], t + out["elapsed"],
                                       cpu + out["cpu"])
    return samples


def evaluate(samples: dict) -> list[dict]:
    """Per case: every server's figures, nb2prod / peer ratios, and the targets' verdicts."""
    rows = []
    for size, clients in CASES:
        fig = {n: figures(*samples[(size, clients), n]) for n in ["nb2prod", *PEERS]}
        ratios = {n: {"p50": fig["nb2prod"]["p50_ms"] / fig[n]["p50_ms"],
                      "rps": fig["nb2prod"]["rps"] / fig[n]["rps"]} for n in PEERS}
        targets = {"bare_p50": ratios["bare"]["p50"] <= BARE_P50_MAX,
                   "bare_rps": ratios["bare"]["rps"] >= BARE_RPS_MIN}
        if (size, clients) == (1, 1):
            targets["fastapi_p50"] = ratios["fastapi"]["p50"] <= FASTAPI_P50_MAX
            targets["fastapi_rps"] = ratios["fastapi"]["rps"] >= FASTAPI_RPS_MIN
        rows.append({"rows": size, "clients": clients, "servers": fig, "ratios": ratios,
                     "targets": targets})
    return rows


def _verdict(row: dict, key: str) -> str:
    return "" if key not in row["targets"] else (" pass" if row["targets"][key] else " FAIL")


def table(rows: list[dict]) -> str:
    """The markdown table: one line per case and server."""
    lines = ["| rows | clients | server | p50 | p99 | req/s | nb2prod p50 / peer's "
             "| nb2prod req/s / peer's |", "|" + "---|" * 8]
    for r in rows:
        for n in ["nb2prod", *PEERS]:
            f = r["servers"][n]
            ratio = ("–", "–") if n == "nb2prod" else (
                f"{r['ratios'][n]['p50']:.3f}{_verdict(r, n + '_p50')}",
                f"{r['ratios'][n]['rps']:.3f}{_verdict(r, n + '_rps')}")
            lines.append(f"| {r['rows']} | {r['clients']} | {n} | {f['p50_ms']:.2f} ms "
                         f"| {f['p99_ms']:.2f} ms | {f['rps']:.1f} | {ratio[0]} | {ratio[1]} |")
    return "\n".join(lines)


def generator_cost(ceiling: dict) -> str:
    """bench/load.py's ceiling (and wrk's, where installed) as one line."""
    return ", ".join(
        f"{c} client(s) {f['rps']:.0f} req/s (p50 {f['p50_ms']:.3f} ms, "
        f"{f['cpu_us_per_request']:.0f} us CPU/request"
        + (f"; wrk {f['wrk_rps']:.0f} req/s)" if f.get("wrk_rps") else ")")
        for c, f in ceiling.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of short bursts")
    ap.add_argument("--seconds", type=float, help="seconds per burst (default 1.5; quick 0.4)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 8; quick 2)")
    add_reuse_option(ap)
    args = ap.parse_args()
    seconds = args.seconds or (0.4 if args.quick else 1.5)
    rounds = args.rounds or (2 if args.quick else 8)
    load = os.getloadavg()
    ceiling = selftest(0.5)
    print(f"load generator against a trivial server: {generator_cost(ceiling)}")

    with workdir() as tmp:
        tmp = Path(tmp)
        flagship = Flagship(tmp, args.reuse_build)
        rows100 = records(flagship.contract, 100)
        peers = start(flagship, tmp)
        try:
            for p in peers.values():
                wait_for(p.server, getattr(p.server, "ready", "/readyz"))
            print("serving: " + ", ".join(f"{n} on 127.0.0.1:{p.server.port}"
                                          for n, p in peers.items()))
            verify(peers, rows100)
            one = flagship.contract["examples"][:1]
            bodies = {(n, size): p.body(one if size == 1 else rows100)
                      for n, p in peers.items() for size in (1, 100)}
            with Generator() as gen:
                samples = measure(peers, gen, bodies, rounds, seconds,
                                  0.2 if args.quick else 0.5)
        finally:
            for p in peers.values():
                p.server.stop()

    rows = evaluate(samples)
    ok = all(all(r["targets"].values()) for r in rows)
    info = machine(load)
    settings = {"quick": args.quick, "seconds": seconds, "rounds": rounds,
                "model_tag": flagship.model_tag, "bento_tag": flagship.bento_tag}
    gen_cpu = [f["generator_cpu_us"] for r in rows for f in r["servers"].values()]
    share = [f["generator_cpu_us"] * f["rps"] / 1e4 for r in rows for f in r["servers"].values()]
    text = table(rows) + (f"\n\nThe load generator's own CPU during the bursts: "
                          f"{min(gen_cpu):.0f}-{max(gen_cpu):.0f} us per request, "
                          f"{min(share):.1f}-{max(share):.1f}% of one core.")
    print("\n" + text + f"\n\noverall: {'PASS' if ok else 'FAIL'}")
    write("peers", {"machine": info, "settings": settings, "generator": ceiling,
                    "targets": {"fastapi_1row_1client": {"p50_ratio_max": FASTAPI_P50_MAX,
                                                          "rps_ratio_min": FASTAPI_RPS_MIN},
                                "bare_every_case": {"p50_ratio_max": BARE_P50_MAX,
                                                    "rps_ratio_min": BARE_RPS_MIN}},
                    "cases": rows, "all_pass": ok},
          "# nb2prod vs. its peers: bare BentoML, FastAPI + uvicorn, MLflow\n\n"
          f"Command: `.venv/bin/python bench/peers.py{' --quick' if args.quick else ''}`\n\n"
          + machine_md(info)
          + f"- model: {flagship.model_tag}, bento: {flagship.bento_tag}\n"
          "- servers, one worker each on 127.0.0.1, all loading the same model.joblib: "
          "`nb2prod` = `bentoml serve` of the build with its defaults (SQLite audit log, "
          "drift, metrics, checks, guardrail, model deadline); `bare` a hand-written BentoML "
          "service; `fastapi` FastAPI + uvicorn with a pydantic request model; `mlflow` "
          "`mlflow models serve --env-manager local` of a pyfunc model\n"
          f"- method: {rounds} interleaved rounds x {seconds}s bursts per server and case, "
          "order rotating; bench/load.py (asyncio, one keep-alive connection per client, in "
          "its own process); against a trivial server it does "
          + generator_cost(ceiling)
          + "\n- ratios are nb2prod's figure divided by the peer's: p50 below 1 and req/s "
          "above 1 mean nb2prod is faster\n\n"
          f"{text}\n\nOverall: **{'PASS' if ok else 'FAIL'}** (targets: at 1 row and 1 "
          f"client, p50 <= {FASTAPI_P50_MAX}x FastAPI's and req/s >= {FASTAPI_RPS_MIN}x; "
          f"against bare BentoML in every case p50 <= {BARE_P50_MAX}x and req/s >= "
          f"{BARE_RPS_MIN}x)\n")


if __name__ == "__main__":
    main()
