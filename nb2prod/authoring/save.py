"""The BentoML model store: save a model version with its contract, load it back pinned.

A model version is the unit of deployment: ``model.joblib`` (sha256-pinned) plus
``contract.json`` (schema, metrics, gate, examples and their expected answers, lineage).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import joblib
import pandas as pd

from nb2prod.authoring import capture, proof
from nb2prod.authoring import profile as drift
from nb2prod.authoring.capture import MAX_CAPTURED_BYTES
from nb2prod.authoring.classes import classes_for
from nb2prod.authoring.drafting import evaluate_gate, infer_columns
from nb2prod.build import scan
from nb2prod.checks import validation
from nb2prod.checks.compiled import CompiledSuite
from nb2prod.checks.suite import Suite
from nb2prod.core import settings
from nb2prod.core.errors import Nb2prodError, NotebookError
from nb2prod.core.jsonify import frame
from nb2prod.core.markers import Marked, collect
from nb2prod.core.spec import SEVERITIES, Contract
from nb2prod.core.version import __version__
from nb2prod.runtime import store
from nb2prod.runtime.loading import (
    ARTIFACT,
    CAPTURED,
    CODE,
    CONTRACT,
    MODULES,
    PROFILE,
    SUITE,
    pack,
    sha256_of,
)
from nb2prod.runtime.predict import Predictor, RequestRejected

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


def save_model(
    name: str,
    model: Any,
    *,
    reference: pd.DataFrame,
    metrics: Mapping[str, float] | None = None,
    gate: Mapping[str, Any] | None = None,
    examples: pd.DataFrame | None = None,
    checks: Any = None,
    timeout_s: float | None = 2.0,
    min_confidence: float | None = None,
    low_confidence: str = "fallback",
    pii: Mapping[str, str] | None = None,
    cost_per_call: float | None = None,
    workers: int = 1,
    max_captured_bytes: int = MAX_CAPTURED_BYTES,
    classes: Any = None,
) -> str:
    """Write a new version of ``name`` to the BentoML model store and return its tag.

    ``reference`` (the training inputs) defines the input schema; ``gate`` maps metric
    names to thresholds (a number means at least, ``n2p.at_most(x)`` at most);
    ``examples`` are answered now, in the notebook, and the built service must give the
    same answers; ``checks`` is the input contract (``n2p.expect(...)`` or suite JSON),
    validated now on ``reference`` with Great Expectations and compiled for requests.
    The service answers from the fallback when the model takes longer than
    ``timeout_s`` or returns a ``confidence`` column below ``min_confidence``
    (``low_confidence="review"`` returns such rows as ``pending_review`` instead);
    ``pii`` maps input columns to ``"hash"`` or ``"drop"`` for the audit log;
    ``cost_per_call`` is summed per model version in the metrics; ``classes`` are the
    classes a classifier predicts, or its training labels (default: the model's
    ``classes_``, else the labels the model function gives ``reference``; see
    ``classes.py``): feedback labels must be one of them. ``workers`` is how
    many processes ``bentoml serve`` runs (``NB2PROD_WORKERS`` overrides it at deployment).
    Call it after the ``@n2p.model`` function is defined.

    The version also holds the notebook code the service runs and, pickled, every other
    module-level value that code uses (at most ``max_captured_bytes`` in all); before
    anything is written, a fresh interpreter with only those must answer the examples
    as this kernel did (``proof.py``).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise Nb2prodError(
            f"model name {name!r} is not valid: use lowercase letters, digits, '-', '_' or '.'",
            fix='e.g. save_model("breast_cancer", ...)',
        )
    marked = collect(vars(sys.modules["__main__"]))
    if marked.model is None:
        raise NotebookError(
            "save_model() found no @n2p.model function",
            fix="define the serving function in an earlier cell:\n"
            "@n2p.model\ndef predict(model, X): return model.predict(X)",
        )
    columns = infer_columns(reference)
    policy = _policy(
        columns, timeout_s, min_confidence, low_confidence, pii, cost_per_call, workers
    )
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    gate_results = evaluate_gate(gate, metrics)
    suite = _suite_json(checks, columns)
    compiled = CompiledSuite(suite) if suite else None
    examples_json, expected = _answer_examples(model, marked, columns, examples, compiled)
    # a model that calls a paid API is not asked to label the training inputs
    known_classes = classes_for(
        model, classes, expected, marked, reference if cost_per_call is None else None
    )
    nb, origin = capture.kernel_notebook()
    if nb is None:
        print(
            "nb2prod: this process cannot say which notebook it runs, so the code the "
            "service gets was neither sliced nor tried here (nb2prod build does both)"
        )
    _same_answer_shape(
        model, marked, examples if examples is not None else reference.head(5), nb, columns
    )

    # Everything that can fail runs before the model store is touched: a failed
    # save_model leaves no version behind.
    with tempfile.TemporaryDirectory(prefix="nb2prod-save-") as tmp:
        files, facts, proven = _stage(
            Path(tmp), model, nb, origin, max_captured_bytes, columns, suite, examples_json
        )
        try:  # Great Expectations on the reference data while the proof's interpreter runs
            validated = validation.validate(reference, suite, marked.checks)
        except BaseException:
            if proven is not None:
                proven.kill()
                proven.wait()
            raise
        if proven is not None:
            proof.finish(proven, Path(tmp), list(expected), _save_cell(nb))
        with store.create(
            name, labels={"nb2prod": "true"}, metadata={"metrics": metrics}
        ) as bento_model:
            target = Path(bento_model.path)
            for file in files:
                (target / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(Path(tmp) / file), target / file)
            _write(target, name, reference, suite, validated)
            contract = Contract(
                name=name,
                columns=columns,
                artifact_sha256=files[ARTIFACT],
                metrics=metrics,
                gate=gate_results,
                examples=examples_json,
                expected=expected,
                code_sha256=files.get(CODE),
                captured_sha256=files.get(CAPTURED),
                captured=tuple(facts),
                modules={
                    f.split("/", 1)[1]: sha
                    for f, sha in files.items()
                    if f.startswith(MODULES + "/")
                },
                notebook_sha256=settings.current().notebook_sha256,
                parameters=json.loads(settings.current().parameters or "{}"),
                checks=len(suite["expectations"]) if suite else 0,
                unsupported=tuple(t for _, t in compiled.unsupported) if compiled else (),
                validation={
                    "success": validated.success,
                    "failed": {sev: len(validated.failed(sev)) for sev in SEVERITIES},
                },
                **policy,
                classes=known_classes,
                nb2prod_version=__version__,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            (target / CONTRACT).write_text(json.dumps(contract.to_json(), indent=1))
    tag = str(bento_model.tag)
    _report(tag, contract)
    return tag


def _write(
    target: Path, name: str, reference: pd.DataFrame, suite: dict | None, validated: Any
) -> None:
    """The suite, its verdict on the reference data and the drift profile, in the version."""
    if suite:
        (target / SUITE).write_text(json.dumps(suite, indent=1))
    validation.write(validated, target, title=f"{name}: reference data", rows=len(reference))
    (target / PROFILE).write_text(json.dumps(drift.profile(reference)))
    _validate_against_production(reference, target, name, suite, validated)


def _stage(
    staging: Path,
    model: Any,
    nb: Any,
    origin: Any,
    max_captured_bytes: int,
    columns: Any,
    suite: dict | None,
    examples: tuple,
) -> tuple[dict[str, str], list, Any]:
    """The model file, the exported code and the captured values, in ``staging``, and the
    proof that they answer the examples away from this kernel, started (None outside a
    notebook): ({file: sha256}, captured values' facts, the running proof)."""
    facts: list[dict[str, Any]] = []
    packed = proven = None
    if nb is not None:  # in a notebook (not a plain script): the code the service gets
        packed = capture.pack(nb, origin, vars(sys.modules["__main__"]), model, max_captured_bytes)
    joblib.dump(model, staging / ARTIFACT)
    local: list[str] = []
    if packed is not None:
        (staging / CODE).write_text(packed.source)
        for relative, source in packed.modules.items():  # helpers.py beside the notebook
            local.append(f"{MODULES}/{relative}")
            (staging / local[-1]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / local[-1])
        if packed.values:
            (staging / CAPTURED).write_bytes(pack(packed.values, packed.needs_code))
        facts = packed.facts
        proven = proof.start(
            staging, columns=[asdict(c) for c in columns], suite=suite, examples=list(examples)
        )
    files = {
        f: sha256_of(staging / f)
        for f in (ARTIFACT, CODE, CAPTURED, *local)
        if (staging / f).exists()
    }
    return files, facts, proven


def _save_cell(nb: Any) -> str:
    """Where the notebook calls save_model, for errors found while saving."""
    calls = scan.save_model_calls(nb)
    return nb.where(calls[-1][0], calls[-1][1].lineno) if calls else nb.path.name


def _answer_shape(value: Any) -> str:
    if isinstance(value, pd.DataFrame):
        return f"columns {list(value.columns)}"
    return "one value per row"


def _same_answer_shape(model: Any, marked: Marked, X: pd.DataFrame, nb: Any, columns: Any) -> None:
    """The fallback answers in the model's shape, or clients get rows of two shapes."""
    if marked.fallback is None or marked.model is None:  # nothing to compare
        return
    X = X[[c.name for c in columns]].reset_index(drop=True)
    found = {m.node.name: m.cell for m in scan.find_marked(nb)} if nb is not None else {}
    name = marked.fallback.__name__
    where = nb.where(found[name]) if name in found else f"@n2p.fallback {name}()"
    try:
        theirs = _answer_shape(marked.fallback(X))
    except Exception as exc:  # the user's fallback, reported located
        raise NotebookError(
            f"the fallback {name}() raised on the examples: {type(exc).__name__}: {exc}",
            where=where,
            fix="the fallback must answer every valid row; fix it",
        ) from None
    try:
        ours = _answer_shape(marked.model(model, X))
    except Exception:  # the model's failures are the fallback's job
        return
    if ours != theirs:
        raise NotebookError(
            f"the fallback {name}() answers with {theirs}, the model "
            f"{marked.model.__name__}() with {ours}: clients would get rows "
            "of two shapes",
            where=where,
            fix=f"make {name}() return the same columns as "
            f"{marked.model.__name__}() (fill the ones it cannot know "
            "with None)",
        )


def _policy(
    columns: Any,
    timeout_s: Any,
    min_confidence: Any,
    low_confidence: str,
    pii: Mapping[str, str] | None,
    cost_per_call: Any,
    workers: Any = 1,
) -> dict[str, Any]:
    """Validate the serving options now, in the notebook, rather than at serve time."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise Nb2prodError(
            f"save_model(workers={workers!r}) must be a whole number of processes, at least 1",
            fix="e.g. workers=2 (NB2PROD_WORKERS overrides it where the service runs)",
        )
    for arg, value in (("timeout_s", timeout_s), ("cost_per_call", cost_per_call)):
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise Nb2prodError(
                f"save_model({arg}={value!r}) must be a positive number or None",
                fix=f"e.g. {arg}=2.0",
            )
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise Nb2prodError(
            f"save_model(min_confidence={min_confidence!r}) must be in [0, 1]",
            fix="e.g. min_confidence=0.7",
        )
    if low_confidence not in ("fallback", "review"):
        raise Nb2prodError(
            f"save_model(low_confidence={low_confidence!r}) is not known",
            fix='use "fallback" or "review"',
        )
    names = {c.name for c in columns}
    for column, how in (pii or {}).items():
        if column not in names or how not in ("hash", "drop"):
            raise Nb2prodError(
                f"save_model(pii={{{column!r}: {how!r}}}): "
                + (
                    "no such input column"
                    if column not in names
                    else 'the treatment must be "hash" or "drop"'
                ),
                fix='e.g. pii={"email": "hash", "name": "drop"}',
            )
    return {
        "timeout_s": timeout_s,
        "min_confidence": min_confidence,
        "low_confidence": low_confidence,
        "pii": dict(pii or {}),
        "cost_per_call": cost_per_call,
        "workers": workers,
    }


def _validate_against_production(
    reference: pd.DataFrame, target: Path, name: str, suite: dict | None, validated: Any
) -> None:
    """Under retrain: the new data must also pass the suite production was built with."""
    suite_path = settings.current().production_suite
    if suite_path:
        result = validation.validate_again(
            reference, json.loads(Path(suite_path).read_text()), suite, validated
        )
        validation.write(
            result,
            target,
            title=f"{name}: new data vs. the production suite",
            rows=len(reference),
            stem="validation-production",
        )


def _suite_json(checks: Any, columns: Any) -> dict | None:
    """The suite as GE JSON, refusing one that names a column the reference lacks."""
    if checks is None:
        return None
    suite = checks if isinstance(checks, Suite) else Suite.from_json(checks)
    suite.check_columns([c.name for c in columns])
    return suite.to_json()


def _answer_examples(
    model: Any, marked: Any, columns: Any, examples: pd.DataFrame | None, compiled: Any
) -> tuple[tuple, tuple]:
    if examples is None:
        return (), ()
    names = [c.name for c in columns]
    missing = [c for c in names if c not in getattr(examples, "columns", [])]
    if missing:
        raise Nb2prodError(
            f"examples lack column(s) {', '.join(map(repr, missing))} of the reference data",
            fix="pass rows of the same inputs, e.g. examples=X_test.head(5)",
        )
    examples = examples[names].reset_index(drop=True)
    try:
        expected = Predictor(model, marked, compiled).predict(examples)
    except RequestRejected as exc:
        raise Nb2prodError(
            f"examples row {exc.errors[0]['loc'][1]} fails reject-level check "
            f"{exc.errors[0]['check']} ({exc.errors[0]['msg']})",
            fix="choose examples that pass the checks",
        ) from None
    return tuple(frame(examples)), tuple(expected)


def _report(tag: str, contract: Contract) -> None:
    failed = [g.describe() for g in contract.gate if not g.passed]
    status = "gate FAILED: " + "; ".join(failed) if failed else "gate passed"
    print(f"nb2prod: saved model {tag} ({status})")
    if contract.checks or contract.validation.get("failed"):
        counts = ", ".join(f"{n} {sev}" for sev, n in contract.validation["failed"].items() if n)
        print(
            f"nb2prod: reference data checked: "
            f"{'all checks pass' if contract.validation['success'] else 'failing: ' + counts}"
        )
    if contract.unsupported:
        print(
            f"nb2prod: warning: {', '.join(contract.unsupported)} cannot run on requests; "
            "they run only when whole data sets are validated (build, retrain)"
        )
    run_file = settings.current().run_file
    if run_file:
        with open(run_file, "a") as fh:
            fh.write(json.dumps({"tag": tag, "gate_passed": contract.gate_passed}) + "\n")
