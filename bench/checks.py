"""Request-path validation: nb2prod's compiled validator vs. Great Expectations.

    .venv/bin/python bench/checks.py [--quick]

Runs notebooks/breast_cancer.ipynb and examples/loan_approval/loan_approval.ipynb with
papermill (as ``nb2prod build`` does) into a temporary BENTOML_HOME, takes the suite each
one stored with its model, and validates 1-row and 10,000-row frames (the stored examples
resampled) with: the compiled validator; Great Expectations as nb2prod runs it in batch
(a fresh ephemeral context per call, ``nb2prod.checks.ge_runner``); and Great
Expectations warm (context, suite and batch definition built once; only
``batch.validate``), GE's best case. Runs are interleaved, medians reported. Targets:
compiled >= 100x faster than GE for a 1-row request, and under 0.5 ms for the flagship.
Writes bench/results/checks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NOTEBOOKS = {"flagship": ROOT / "notebooks" / "breast_cancer.ipynb",
             "loan": ROOT / "examples" / "loan_approval" / "loan_approval.ipynb"}
SIZES = (1, 10_000)


def suites_and_frames(tmp: Path) -> dict[str, tuple[dict, dict[int, pd.DataFrame]]]:
    """Run each notebook; return its stored suite and frames of 1 and 10,000 rows."""
    from nb2prod.build import execute, notebook
    from nb2prod.runtime.loading import SUITE, load_version

    found = {}
    for name, path in NOTEBOOKS.items():
        t0 = time.perf_counter()
        _, saved = execute.run(notebook.read(path), tmp / f"{name}.ipynb", {},
                               tmp / f"{name}.jsonl")
        contract, folder = load_version(saved[-1]["tag"])
        suite = json.loads((folder / SUITE).read_text())
        examples = pd.DataFrame(list(contract.examples))
        for col in contract.columns:  # JSON examples back to the reference dtypes
            if col.dtype == "float":
                examples[col.name] = examples[col.name].astype("float64")
        frames = {n: examples.sample(n, replace=True, random_state=0).reset_index(drop=True)
                  for n in SIZES}
        print(f"{name}: {len(suite['expectations'])} expectations "
              f"(ran the notebook in {time.perf_counter() - t0:.1f}s)")
        found[name] = (suite, frames)
    return found


class WarmGE:
    """Great Expectations with everything but ``batch.validate`` built once."""

    def __init__(self, suite: dict):
        import great_expectations as gx

        self.context = gx.get_context(mode="ephemeral")
        asset = self.context.data_sources.add_pandas("bench").add_dataframe_asset("frame")
        self.definition = asset.add_batch_definition_whole_dataframe("whole")
        self.suite = gx.ExpectationSuite(name=suite["name"], expectations=suite["expectations"])

    def __call__(self, df: pd.DataFrame) -> object:
        batch = self.definition.get_batch(batch_parameters={"dataframe": df})
        return batch.validate(self.suite, result_format="COMPLETE")


def timed(fn, df: pd.DataFrame) -> float:
    t0 = time.perf_counter()
    fn(df)
    return (time.perf_counter() - t0) * 1000


def measure(suite: dict, frames: dict[int, pd.DataFrame], rounds: dict[int, int]) -> list[dict]:
    from nb2prod.checks import ge_runner
    from nb2prod.checks.compiled import CompiledSuite

    compiled, warm = CompiledSuite(suite), WarmGE(suite)
    runners = {"compiled": compiled.validate, "ge_warm": warm,
               "ge_per_call": lambda df: ge_runner.validate(df, suite)}
    rows = []
    for n, df in frames.items():
        for fn in runners.values():  # warm-up
            fn(df)
        samples: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(rounds[n]):  # interleaved, the order rotating each round
            names = list(runners)[r % 3:] + list(runners)[:r % 3]
            for k in names:
                repeat = 50 if k == "compiled" else 1  # compiled is too quick to time alone
                samples[k].append(sum(timed(runners[k], df) for _ in range(repeat)) / repeat)
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append({"rows": n, **{f"{k}_ms": v for k, v in med.items()},
                     "speedup_vs_ge_warm": med["ge_warm"] / med["compiled"],
                     "speedup_vs_ge_per_call": med["ge_per_call"] / med["compiled"],
                     "rounds": rounds[n], "skipped": [t for _, t in compiled.unsupported]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = ap.parse_args()
    rounds = {1: 5, 10_000: 3} if args.quick else {1: 25, 10_000: 9}
    with tempfile.TemporaryDirectory(prefix="nb2prod-bench-checks-") as tmp:
        os.environ.update(BENTOML_HOME=str(Path(tmp) / "home"), BENTOML_DO_NOT_TRACK="true")
        found = suites_and_frames(Path(tmp))
        results = {name: {"expectations": len(suite["expectations"]),
                          "cases": measure(suite, frames, rounds)}
                   for name, (suite, frames) in found.items()}
    flagship_1 = results["flagship"]["cases"][0]
    verdict = {"flagship_1row_under_0.5ms": flagship_1["compiled_ms"] < 0.5,
               "compiled_100x_faster_1row": all(r["cases"][0]["speedup_vs_ge_warm"] >= 100
                                                for r in results.values())}
    lines = ["| suite | expectations | rows | compiled | GE warm | GE per call | speed-up vs warm "
             "| vs per call |", "|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for c in res["cases"]:
            lines.append(f"| {name} | {res['expectations']} | {c['rows']} | "
                         f"{c['compiled_ms']:.3f} ms | {c['ge_warm_ms']:.1f} ms | "
                         f"{c['ge_per_call_ms']:.1f} ms | {c['speedup_vs_ge_warm']:.0f}x | "
                         f"{c['speedup_vs_ge_per_call']:.0f}x |")
    table = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checks.json").write_text(json.dumps(
        {"python": sys.version.split()[0], "nproc": os.cpu_count(), "quick": args.quick,
         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
         "targets": verdict}, indent=1) + "\n")
    (RESULTS / "checks.md").write_text(
        "# Request-path validation: compiled validator vs. Great Expectations\n\n"
        f"Command: `.venv/bin/python bench/checks.py{' --quick' if args.quick else ''}` "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]}); medians of interleaved "
        f"runs.\n\n{table}\n\nTargets: flagship 1 row under 0.5 ms: "
        f"**{verdict['flagship_1row_under_0.5ms']}**; compiled >= 100x faster than warm GE "
        f"for 1 row: **{verdict['compiled_100x_faster_1row']}**\n")
    print(f"\n{table}\n\ntargets: {verdict}\nwrote {RESULTS / 'checks.md'}")


if __name__ == "__main__":
    main()
