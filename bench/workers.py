"""Workers: the throughput of 2 BentoML workers against 1, at 8 clients, 1-row requests.

    .venv/bin/python bench/workers.py [--quick] [--seconds S] [--rounds R]
                                      [--workers-env 'NAME=VALUE with {n} and {service}']

Builds the flagship (notebooks/breast_cancer.ipynb) into a temporary BENTOML_HOME and
serves it with ``bentoml serve``, defaults on, once with 1 worker and once with 2, beside
the bare BentoML service of bench/common.py with 1 and 2 workers (is a shortfall nb2prod's
or BentoML's?). The worker count is set through the environment: by default
``BENTOML_CONFIG_OPTIONS=services.{service}.workers={n}`` with ``{service}`` the service
class in the build's service.py; ``--workers-env 'NB2PROD_WORKERS={n}'`` switches nb2prod's
servers to another setting. Each server's worker processes are counted, so a setting that
is ignored shows. Interleaved rounds at 8 clients (bench/load.py). Target: nb2prod with 2
workers >= 1.6x the throughput of 1 worker. Writes bench/results/workers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import psutil
from common import Flagship, add_reuse_option, machine, machine_md, pct, wait_for, workdir, write
from load import Generator, Group, request

from nb2prod.serve import Server

CLIENTS, RPS_RATIO_MIN = 8, 1.6
DEFAULT_ENV = "BENTOML_CONFIG_OPTIONS=services.{service}.workers={n}"


def setting(template: str, service: str, n: int) -> dict[str, str]:
    """The environment ``template`` names, for ``n`` workers of ``service``."""
    name, _, value = template.partition("=")
    if not name or not value:
        raise SystemExit(f"--workers-env {template!r}: expected NAME=VALUE, e.g. {DEFAULT_ENV}")
    return {name: value.format(service=service, n=n)}


def workers(server: Server) -> int:
    """How many BentoML worker processes ``server`` runs."""
    kids = psutil.Process(server.proc.pid).children(recursive=True)
    return sum(1 for k in kids if "_bentoml_impl.worker" in " ".join(k.cmdline()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of short bursts")
    ap.add_argument("--seconds", type=float, help="seconds per burst (default 2; quick 0.6)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 6; quick 2)")
    ap.add_argument("--workers-env", default=DEFAULT_ENV, metavar="NAME=VALUE",
                    help=f"how nb2prod's worker count is set (default {DEFAULT_ENV!r})")
    add_reuse_option(ap)
    args = ap.parse_args()
    seconds = args.seconds or (0.6 if args.quick else 2.0)
    rounds = args.rounds or (2 if args.quick else 6)
    load = os.getloadavg()

    with workdir() as tmp:
        tmp = Path(tmp)
        flagship = Flagship(tmp, args.reuse_build)
        service, bare_dir = flagship.service_class(), flagship.bare()
        servers: dict[str, Server] = {}
        for n in (1, 2):
            servers[f"nb2prod-{n}w"] = flagship.nb2prod(
                f"nb2prod-{n}w", setting(args.workers_env, service, n))
            servers[f"bare-{n}w"] = Server(
                "service:Bare", cwd=bare_dir, log=tmp / f"bare-{n}w.log",
                env={**flagship.env, **setting(DEFAULT_ENV, "Bare", n)})
        samples: dict = {name: ([], 0.0) for name in servers}
        try:
            for s in servers.values():
                wait_for(s)
            counts = {name: workers(s) for name, s in servers.items()}
            print("worker processes: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            one = {"records": flagship.contract["examples"][:1]}
            raw = request("/predict", json.dumps(one).encode())
            names = list(servers)
            with Generator() as gen:
                for s in servers.values():
                    gen.burst(s.port, [Group("w", CLIENTS, raw)], 0.3 if args.quick else 1.0)
                for r in range(rounds):
                    print(f"round {r + 1}/{rounds} …", flush=True)
                    for name in names[r % len(names):] + names[:r % len(names)]:
                        out = gen.burst(servers[name].port, [Group("c", CLIENTS, raw)], seconds)
                        old, t = samples[name]
                        samples[name] = (old + out["c"]["latencies"], t + out["elapsed"])
        finally:
            for s in servers.values():
                s.stop()

    fig = {n: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "rps": len(v) / t,
               "requests": len(v), "worker_processes": counts[n]} for n, (v, t) in samples.items()}
    ratio = {k: fig[f"{k}-2w"]["rps"] / fig[f"{k}-1w"]["rps"] for k in ("nb2prod", "bare")}
    ok = ratio["nb2prod"] >= RPS_RATIO_MIN
    info = machine(load)
    text = ("| server | workers (processes) | p50 | p99 | req/s |\n|---|---|---|---|---|\n"
            + "".join(f"| {n} | {n[-2]} ({f['worker_processes']}) | {f['p50_ms']:.2f} ms | "
                      f"{f['p99_ms']:.2f} ms | {f['rps']:.1f} |\n" for n, f in fig.items())
            + f"\nreq/s with 2 workers / 1 worker: nb2prod {ratio['nb2prod']:.2f} "
            f"{'pass' if ok else 'FAIL'} (target >= {RPS_RATIO_MIN}), bare {ratio['bare']:.2f}")
    print("\n" + text)
    write("workers",
          {"machine": info, "settings": {"quick": args.quick, "seconds": seconds,
                                         "rounds": rounds, "clients": CLIENTS,
                                         "workers_env": args.workers_env, "service": service,
                                         "model_tag": flagship.model_tag},
           "servers": fig, "rps_ratio_2w_1w": ratio, "target_ratio_min": RPS_RATIO_MIN,
           "pass": ok},
          "# Workers: 2 against 1, at 8 clients, 1-row requests\n\n"
          f"Command: `.venv/bin/python bench/workers.py{' --quick' if args.quick else ''}`\n\n"
          + machine_md(info)
          + f"- model: {flagship.model_tag}; nb2prod's workers set by `{args.workers_env}` "
          f"(service {service}); bare's by `{DEFAULT_ENV}` (service Bare)\n"
          f"- method: {rounds} interleaved rounds x {seconds}s bursts per server, {CLIENTS} "
          "keep-alive clients (bench/load.py), all four servers up throughout\n\n"
          f"{text}\n")


if __name__ == "__main__":
    main()
