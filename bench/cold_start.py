"""Cold start: ``bentoml serve`` to a ready ``/readyz``, nb2prod's build vs. bare BentoML.

    .venv/bin/python bench/cold_start.py [--quick] [--runs N]

Builds the flagship (notebooks/breast_cancer.ipynb) into a temporary BENTOML_HOME and
writes the bare BentoML service of bench/common.py for the same model. Then, alternately
(nb2prod, bare, bare, nb2prod, ...: neither always goes first after the other), spawns
``bentoml serve`` and polls ``/readyz`` every 20 ms until it answers 200; the time from
spawning to that answer is one run. nb2prod runs with its defaults, auditing into a
SQLite file of its own each run (a first start, tables created). Medians of the runs;
target: nb2prod's median within 1.1x of bare's. Writes bench/results/cold_start.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import Flagship, add_reuse_option, machine, machine_md, wait_for, workdir, write

from nb2prod.serve import Server

RATIO_MAX = 1.1


def cold_start(start, run: int) -> float:
    """Seconds from spawning a server (``start(run)``) to a 200 on its /readyz."""
    t0 = time.monotonic()
    server: Server = start(run)
    try:
        return wait_for(server, "/readyz", timeout=180, poll=0.02) - t0
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 runs each")
    ap.add_argument("--runs", type=int, help="runs per server (default 6; quick 2)")
    add_reuse_option(ap)
    args = ap.parse_args()
    runs = args.runs or (2 if args.quick else 6)
    load = os.getloadavg()

    with workdir() as tmp:
        tmp = Path(tmp)
        flagship = Flagship(tmp, args.reuse_build)
        bare_dir = flagship.bare()
        starts = {
            "nb2prod": lambda i: flagship.nb2prod(f"nb2prod-{i}"),
            "bare": lambda i: Server("service:Bare", cwd=bare_dir, env=flagship.env,
                                     log=tmp / f"bare-{i}.log"),
        }
        times: dict[str, list[float]] = {name: [] for name in starts}
        for i in range(runs):
            order = list(starts) if i % 2 == 0 else list(starts)[::-1]
            for name in order:
                times[name].append(cold_start(starts[name], i))
                print(f"run {i + 1}/{runs}: {name} ready in {times[name][-1]:.2f}s", flush=True)

    med = {n: statistics.median(v) for n, v in times.items()}
    ratio = med["nb2prod"] / med["bare"]
    ok = ratio <= RATIO_MAX
    info = machine(load)
    text = ("| server | median | min | max | runs |\n|---|---|---|---|---|\n"
            + "".join(f"| {n} | {med[n]:.2f} s | {min(v):.2f} s | {max(v):.2f} s | {len(v)} |\n"
                      for n, v in times.items())
            + f"\nnb2prod / bare (medians): {ratio:.3f} {'pass' if ok else 'FAIL'} "
            f"(target <= {RATIO_MAX})")
    print("\n" + text)
    write("cold_start",
          {"machine": info, "settings": {"quick": args.quick, "runs": runs,
                                         "model_tag": flagship.model_tag,
                                         "bento_tag": flagship.bento_tag},
           "seconds": times, "median_s": med, "ratio": ratio, "target_ratio_max": RATIO_MAX,
           "pass": ok},
          "# Cold start: `bentoml serve` to a ready /readyz\n\n"
          f"Command: `.venv/bin/python bench/cold_start.py{' --quick' if args.quick else ''}`\n\n"
          + machine_md(info)
          + f"- model: {flagship.model_tag}, bento: {flagship.bento_tag}\n"
          f"- method: {runs} runs per server, alternating which goes first; time from spawning "
          "`bentoml serve` to the first 200 on /readyz (polled every 20 ms); nb2prod with its "
          "defaults and a new SQLite audit log each run; bare = bench/common.py's service\n\n"
          f"{text}\n")


if __name__ == "__main__":
    main()
