"""What ``save_model``'s fresh-interpreter proof costs, beside the notebook run it is part of.

    .venv/bin/python bench/save_model.py [--rounds 5]

For the flagship and a pipeline holding notebook classes (tests/notebooks/
model_class_in_pipeline.ipynb): runs the notebook once with ``nb2prod build``'s kernel
set-up (``execute.run``, into a temporary BENTOML_HOME) to get a model version, then, in
interleaved rounds, (a) the whole notebook run again (papermill, fresh kernel, save_model
and its proof included) and (b) the proof alone (``proof.prove`` on the version's files:
a fresh interpreter loading code, captured values and model, answering the examples).
Medians; the share is proof / notebook run. Writes bench/results/save_model.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NOTEBOOKS = {"flagship": ROOT / "notebooks" / "breast_cancer.ipynb",
             "model_class_in_pipeline": ROOT / "tests" / "notebooks" /
             "model_class_in_pipeline.ipynb"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nb2prod-bench-save-"))
    os.environ.update(BENTOML_HOME=str(work / "bentoml"), BENTOML_DO_NOT_TRACK="true",
                      NB2PROD_PANEL="0")
    from nb2prod.build import execute, notebook
    from nb2prod.authoring import proof
    from nb2prod.runtime.loading import ARTIFACT, CAPTURED, CODE
    from nb2prod.runtime.loading import SUITE, load_version

    def run(name: str, n: int) -> tuple[float, str]:
        nb = notebook.read(NOTEBOOKS[name])
        t0 = time.perf_counter()
        _, saved = execute.run(nb, work / f"{name}-{n}.ipynb", {}, work / f"{name}-{n}.jsonl")
        return time.perf_counter() - t0, saved[-1]["tag"]

    def prove(tag: str, n: int) -> float:
        contract, path = load_version(tag)
        staged = work / f"proof-{n}"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        for file in (ARTIFACT, CODE, CAPTURED):
            if (path / file).exists():
                shutil.copyfile(path / file, staged / file)
        suite = json.loads((path / SUITE).read_text()) if (path / SUITE).exists() else None
        t0 = time.perf_counter()
        proof.prove(staged, columns=[asdict(c) for c in contract.columns], suite=suite,
                    examples=list(contract.examples), expected=list(contract.expected),
                    where="bench")
        return time.perf_counter() - t0

    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for name in NOTEBOOKS:
            _, tag = run(name, 0)  # warm: the first kernel start pays for disk caches
            runs, proofs = [], []
            for n in range(1, args.rounds + 1):
                if n % 2:
                    runs.append(run(name, n)[0])
                    proofs.append(prove(tag, n))
                else:
                    proofs.append(prove(tag, n))
                    runs.append(run(name, n)[0])
                print(f"{name} round {n}: notebook {runs[-1]:.2f}s, proof {proofs[-1]:.2f}s",
                      flush=True)
            figures[name] = {"notebook_run_s": runs, "proof_s": proofs}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, result = [], {"rounds": args.rounds, "loadavg_at_end": os.getloadavg(), "notebooks": {}}
    for name, f in figures.items():
        run_m, proof_m = statistics.median(f["notebook_run_s"]), statistics.median(f["proof_s"])
        result["notebooks"][name] = {**f, "median_notebook_run_s": run_m,
                                     "median_proof_s": proof_m, "share": proof_m / run_m}
        rows.append(f"| {name} | {run_m:.2f} s | {proof_m:.2f} s | {proof_m / run_m:.0%} |")
    md = ("# save_model's fresh-interpreter proof vs. the notebook run\n\n"
          f"Command: `.venv/bin/python bench/save_model.py --rounds {args.rounds}`; "
          f"{os.cpu_count()} cores; interleaved rounds, medians.\n\n"
          "| notebook | notebook run (papermill, save_model included) | proof alone | share |\n"
          "|---|---|---|---|\n" + "\n".join(rows) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "save_model.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "save_model.md").write_text(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
