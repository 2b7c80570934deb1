"""The proof ``save_model`` gives in the notebook: the version works away from the kernel.

A fresh interpreter, in an empty directory, gets only what the service will get: the
exported code, the captured values and the model file. It loads them the way the service
does (``runtime.loading``), turns the examples into a frame as a request would
(``FrameMaker``) and answers them with the marked functions; the answers must be the
ones the kernel gave. Anything the kernel had and the service would not (a class only
``__main__`` knew, a helper not exported, a file beside the notebook) fails here, while
the notebook is still open, instead of inside the build's tests or in production.

Run as ``python -m nb2prod.authoring.proof DIR``: it reads ``DIR/proof.json`` and writes
``DIR/answers.json`` (the answers, or the stage that failed and the error).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from nb2prod.core.errors import NotebookError

PROOF = "proof.json"
ANSWERS = "answers.json"


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-9 (a fresh process may round the last bit)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def start(
    folder: Path, *, columns: list[dict], suite: dict | None, examples: list[dict]
) -> subprocess.Popen:
    """Start answering ``examples`` in a fresh interpreter from ``folder`` (code.py,
    captured.pkl, model.joblib); ``finish`` reads the verdict. In between the kernel can
    do other work: the proof takes about a second, most of it imports."""
    (folder / PROOF).write_text(
        json.dumps({"columns": columns, "suite": suite, "examples": examples}, default=str)
    )
    return subprocess.Popen(
        [sys.executable, "-m", "nb2prod.authoring.proof", str(folder)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, folder: Path, expected: list[dict], where: str) -> None:
    """A located ``NotebookError`` unless the fresh interpreter gave ``expected``."""
    output, _ = proc.communicate()
    out = folder / ANSWERS
    if not out.exists():
        tail = "\n".join((output or "").strip().splitlines()[-5:])
        raise NotebookError(
            f"the exported code could not be tried in a fresh interpreter:\n{tail}",
            where=where,
            fix="see the message above",
        )
    result = json.loads(out.read_text())
    if "error" in result:
        raise NotebookError(
            f"the model does not work away from this kernel: {result['stage']} failed with "
            f"{result['error']}",
            where=where,
            fix=_advice(result["error"]),
        )
    for i, (want, got) in enumerate(zip(expected, result["answers"])):
        if not same(want, got):
            raise NotebookError(
                f"away from this kernel, example {i} gets another answer: here "
                f"{json.dumps(want, default=str)}, there {json.dumps(got, default=str)}",
                where=where,
                fix="the code depends on something the kernel has and the "
                "service would not (global state changed after it was defined, random "
                "numbers); make the answer depend only on the model and the input",
            )


def prove(
    folder: Path,
    *,
    columns: list[dict],
    suite: dict | None,
    examples: list[dict],
    expected: list[dict],
    where: str,
) -> None:
    """``start`` then ``finish``: the proof, waited for."""
    finish(start(folder, columns=columns, suite=suite, examples=examples), folder, expected, where)


def _advice(error: str) -> str:
    if error.startswith("NameError"):
        return (
            "define that name in a cell the build runs, at the top level (not only "
            "inside an if or a loop), or pass it through the model"
        )
    if error.startswith(("ModuleNotFoundError", "ImportError")):
        return (
            "the service has the installed packages and the modules beside the notebook "
            "only: install the missing one as a package, or move it beside the notebook"
        )
    if error.startswith(("FileNotFoundError", "OSError")):
        return (
            "the service has no files beside the notebook: read the file in a cell and "
            "use the value (it is captured), not the path"
        )
    return "make the marked code and what it uses depend only on the model and its input"


def _run(folder: Path) -> dict[str, Any]:
    from nb2prod.checks.compiled import CompiledSuite
    from nb2prod.core.markers import collect
    from nb2prod.core.spec import ColumnSpec
    from nb2prod.runtime.loading import (
        ARTIFACT,
        CAPTURED,
        CODE,
        MODULES,
        add_modules,
        code_module,
        load_artifact,
    )
    from nb2prod.runtime.predict import Predictor
    from nb2prod.runtime.schema import FrameMaker

    job = json.loads((folder / PROOF).read_text())
    stage = "importing the exported code"
    if (folder / MODULES).is_dir():
        add_modules(folder / MODULES)
    try:
        captured = folder / CAPTURED
        module = code_module(
            (folder / CODE).read_text(),
            "nb2prod_notebook",
            str(folder / CODE),
            captured.read_bytes() if captured.exists() else None,
        )
        stage = "loading the model file"
        model = load_artifact(folder / ARTIFACT, module)
        stage = "answering the examples"
        columns = tuple(ColumnSpec.from_json(c) for c in job["columns"])
        suite = CompiledSuite(job["suite"]) if job["suite"] else None
        X = FrameMaker(columns)(job["examples"])
        answers = Predictor(model, collect(vars(module)), suite).predict(X) if len(X) else []
        return {"answers": answers}
    except Exception as exc:  # reported to the notebook, located there
        last = traceback.extract_tb(exc.__traceback__)[-1]
        at = (
            f" (at {Path(last.filename).name}, line {last.lineno}: {last.line})"
            if last.filename.endswith(CODE)
            else ""
        )
        return {"stage": stage, "error": f"{type(exc).__name__}: {exc}{at}"}


if __name__ == "__main__":
    target = Path(sys.argv[1])
    (target / ANSWERS).write_text(json.dumps(_run(target), default=str))
