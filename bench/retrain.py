"""Retrain-and-deploy time vs. a plain papermill run of the same notebook.

    .venv/bin/python bench/retrain.py [--rounds R]

In a temporary BENTOML_HOME, one untimed ``nb2prod retrain`` of notebooks/breast_cancer.ipynb
makes the first production. Then R rounds each time, in alternating order so machine
noise hits both alike:

- papermill: ``python -m papermill notebooks/breast_cancer.ipynb out.ipynb`` (same kernel);
- retrain: ``python -m nb2prod.cli retrain notebooks/breast_cancer.ipynb``: the same run plus
  validation against production's suite, judging, rendering, the generated tests and
  ``bentoml build`` (side by side) and the atomic promotion. Every timed retrain must
  end promoted (same data, so metrics equal production's: "not worse").

Same data means production's suite is the candidate's, so validating against it reuses
every result (``validation.validate_again``); on new data the expectations drafted from
it differ and run again, a few milliseconds each (0.36 s for all 121 of the flagship's).

Both are whole commands, interpreter start included, started the same way (``python -m``:
this environment's console scripts add seconds of their own to nb2prod's start-up, see
the report). The machine's load average is recorded: other work on it skews both.
Target: median retrain <= 1.5x median papermill. Writes bench/results/retrain.{json,md},
with retrain's per-stage medians from its progress lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "breast_cancer.ipynb"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
RATIO_MAX = 1.5
_STAGE = re.compile(r"^\[(\d+)/\d+\] (.*) …\n(?:\s{6}(?!done).*\n)*\s+done in ([\d.]+)s$",
                    re.MULTILINE)


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    """Run ``cmd``; (wall seconds, stdout); exit on failure with its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd[:4]))} failed (exit {proc.returncode}):\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def papermill(work: Path, env: dict, n: int) -> float:
    seconds, _ = timed([sys.executable, "-m", "papermill", str(NOTEBOOK),
                        str(work / f"plain-{n}.ipynb"),
                        "-k", "python3", "--cwd", str(NOTEBOOK.parent), "--no-progress-bar",
                        "--log-level", "ERROR"], env, work)
    return seconds


def retrain(work: Path, env: dict, n: int) -> tuple[float, dict[str, float]]:
    seconds, out = timed([sys.executable, "-m", "nb2prod.cli", "retrain", str(NOTEBOOK), "--out",
                          str(work / "runs" / str(n)), "--reason", "benchmark"], env, work)
    if "promoted" not in out:
        sys.exit(f"retrain {n} did not promote:\n{out}")
    return seconds, {title: float(s) for _, title, s in _STAGE.findall(out)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in
                                                                  os.getloadavg()],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def write(result: dict) -> str:
    """bench/results/retrain.{json,md}; returns the markdown."""
    m, info = result["medians"], result["machine"]
    stages = "\n".join(f"| {title} | {s:.1f} s |" for title, s in result["stage_medians"].items())
    md = (f"# Retrain and deploy vs. a plain papermill run\n\n"
          f"Command: `.venv/bin/python bench/retrain.py --rounds {result['rounds']}`\n\n"
          f"- date: {info['date']}\n- nproc: {info['nproc']} ({info['cpu']})\n"
          f"- load average at start (1/5/15 min): {info['loadavg_at_start']}, at end: "
          f"{result['loadavg_at_end']}\n- python: {info['python']}, {info['platform']}\n"
          "- data: the notebook's own each time, so production's suite is the candidate's and "
          "its validation results are reused (new data re-runs what was drafted from it: "
          "up to 0.36 s for all 121 expectations)\n"
          f"- notebook: notebooks/breast_cancer.ipynb; {result['rounds']} interleaved rounds, "
          "order alternating; whole commands, interpreter start included\n\n"
          "| | median | runs |\n|---|---|---|\n"
          f"| python -m papermill | {m['papermill']:.1f} s | "
          f"{', '.join(f'{x:.1f}' for x in result['papermill'])} |\n"
          f"| python -m nb2prod.cli retrain (+ promote + bento) | {m['retrain']:.1f} s | "
          f"{', '.join(f'{x:.1f}' for x in result['retrain'])} |\n\n"
          f"Ratio retrain / papermill: **{result['ratio']:.2f}** "
          f"({'PASS' if result['pass'] else 'FAIL'}, target <= {RATIO_MAX})\n\n"
          "Retrain's stages (medians, from its progress lines):\n\n| stage | median |\n"
          f"|---|---|\n{stages}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrain.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "retrain.md").write_text(md)
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="nb2prod-bench-retrain-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"),
               "BENTOML_DO_NOT_TRACK": "true",
               "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
        first, _ = retrain(work, env, 0)
        print(f"first production (untimed): {first:.1f}s")
        plain, full, stages = [], [], []
        for n in range(1, args.rounds + 1):
            order = ("papermill", "retrain") if n % 2 else ("retrain", "papermill")
            for which in order:
                if which == "papermill":
                    plain.append(papermill(work, env, n))
                else:
                    seconds, per_stage = retrain(work, env, n)
                    full.append(seconds)
                    stages.append(per_stage)
            print(f"round {n}: papermill {plain[-1]:.1f}s, retrain {full[-1]:.1f}s")
    medians = {"papermill": statistics.median(plain), "retrain": statistics.median(full)}
    ratio = medians["retrain"] / medians["papermill"]
    result = {"machine": info, "rounds": args.rounds, "papermill": plain, "retrain": full,
              "medians": medians, "ratio": ratio, "target_ratio_max": RATIO_MAX,
              "pass": ratio <= RATIO_MAX, "loadavg_at_end": [round(x, 2) for x in
                                                             os.getloadavg()],
              "stage_medians": {t: statistics.median(s[t] for s in stages) for t in stages[0]}}
    print(write(result))


if __name__ == "__main__":
    main()
