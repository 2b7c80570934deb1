"""Request-path cost of drift monitoring: ``DriftMonitor.observe()`` and ``report()``.

    .venv/bin/python bench/drift.py [--calls N] [--json PATH]

Frames are made the way the service makes them (``FrameMaker``: one shared column
index, float columns from one numpy array; mixed columns through ``from_records`` and
casts) before timing, 30 features each: all float, and 25 float + 5 string. Each case
times every ``observe()`` call, and ``observe_records()`` on the same requests' records,
one by one, and prints p50 / p99 / mean in µs; the p99 of 1-row requests includes the
PSI re-evaluation that every ``check_every`` (100) rows pays. A numpy no-op is timed
too, to place this machine against others.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nb2prod.authoring.profile import profile
from nb2prod.runtime.drift import DriftMonitor
from nb2prod.runtime.schema import FrameMaker
from nb2prod.core.spec import ColumnSpec

FEATURES = 30
STRINGS = 5
CITIES = ["paris", "lyon", "nice", "lille", "nantes", "brest"]


def population(n: int, rng: np.random.Generator, strings: int) -> pd.DataFrame:
    """``n`` rows: ``FEATURES - strings`` normal floats and ``strings`` city columns."""
    data = {f"f{i}": rng.normal(i, 1 + i / 10, n) for i in range(FEATURES - strings)}
    data.update({f"s{i}": pd.array(rng.choice(CITIES, n), dtype="str") for i in range(strings)})
    return pd.DataFrame(data)


def requests(reference: pd.DataFrame, rows: int, count: int, rng: np.random.Generator):
    """``count`` frames of ``rows`` records each, built by the service's ``FrameMaker``."""
    columns = tuple(ColumnSpec(c, "float" if c.startswith("f") else "string", False)
                    for c in reference.columns)
    make = FrameMaker(columns)
    records = reference.to_dict("records")
    return [make([records[j] for j in rng.integers(0, len(records), rows)])
            for _ in range(count)]


def timed(fn, args) -> list[float]:
    """Microseconds of each ``fn(a)`` for ``a`` in ``args``."""
    out = []
    for a in args:
        start = time.perf_counter_ns()
        fn(a)
        out.append((time.perf_counter_ns() - start) / 1e3)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_us": round(s[len(s) // 2], 1), "p99_us": round(s[int(len(s) * 0.99)], 1),
            "mean_us": round(statistics.fmean(s), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3_000, help="observe() calls per case")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noop = np.zeros(FEATURES)
    results = {"machine": platform.processor() or platform.machine(),
               "numpy_noop_us": summary(timed(lambda _: noop + 1, range(10_000)))["p50_us"],
               "cases": []}
    for strings in (0, STRINGS):
        reference = population(20_000, rng, strings)
        prof = profile(reference)
        for rows in (1, 100):
            monitor = DriftMonitor(prof)
            frames = requests(reference, rows, min(args.calls, 500), rng)
            for X in frames[:50]:  # warm up: first-call caches, ring pages
                monitor.observe(X)
            calls = [frames[i % len(frames)] for i in range(args.calls)]
            records = [X.to_dict("records") for X in calls]
            for how, fn, args_ in (("observe", monitor.observe, calls),
                                   ("observe_records", monitor.observe_records, records)):
                case = {"call": how, "features": f"{FEATURES - strings} float + {strings} str",
                        "rows": rows, **summary(timed(fn, args_))}
                case["per_row_us"] = round(case["mean_us"] / rows, 2)
                results["cases"].append(case)
            results["report_us"] = summary(timed(lambda _: monitor.report(), range(200)))["p50_us"]
    print(f"numpy no-op on this machine: {results['numpy_noop_us']} µs; "
          f"report(): {results['report_us']} µs")
    print(f"{'call':<17}{'features':<18}{'rows':>5}{'p50 µs':>9}{'p99 µs':>9}{'mean µs':>9}"
          f"{'µs/row':>8}")
    for c in results["cases"]:
        print(f"{c['call']:<17}{c['features']:<18}{c['rows']:>5}{c['p50_us']:>9}"
              f"{c['p99_us']:>9}{c['mean_us']:>9}{c['per_row_us']:>8}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
