"""Batch validation of a whole data set: the suite with real Great Expectations, plus the
notebook's ``@n2p.check`` functions, written as ``validation.json`` and ``validation.html``.

Runs where data lives: inside ``save_model`` (so in the notebook's kernel, under
``nb2prod build``, ``nb2prod retrain`` or interactively) — never on the request path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from nb2prod.checks.results import ExpectationResult, ValidationResult
from nb2prod.core.jsonify import scalar
from nb2prod.core.markers import spec_of

REPORT_JSON = "validation.json"
REPORT_HTML = "validation.html"
SAMPLE = 20


def custom_checks(
    df: pd.DataFrame, checks: list[Callable[..., Any]], first_index: int
) -> list[ExpectationResult]:
    """Run ``@n2p.check`` functions on ``df`` as if they were expectations."""
    results = []
    for k, fn in enumerate(checks):
        ok = np.asarray(fn(df), dtype=bool)
        ok = np.full(len(df), bool(ok)) if ok.ndim == 0 else ok
        bad = tuple(int(i) for i in np.flatnonzero(~ok))
        results.append(
            ExpectationResult(
                index=first_index + k,
                type=f"check:{fn.__name__}",
                column=None,
                severity=getattr(spec_of(fn), "severity", None) or "reject",
                success=not bad,
                unexpected_rows=bad,
                expected=f"{fn.__name__}() true for every row",
                element_count=len(df),
            )
        )
    return results


def validate(
    df: pd.DataFrame, suite: dict | None, checks: list[Callable[..., Any]]
) -> ValidationResult:
    """The suite (real GE, imported only when there is a suite) and custom checks on ``df``."""
    df = df.reset_index(drop=True)
    results: list[ExpectationResult] = []
    skipped: tuple[str, ...] = ()
    if suite and suite.get("expectations"):
        from nb2prod.checks import ge_runner

        found = ge_runner.validate(df, suite)
        results, skipped = list(found.results), found.skipped
    results += custom_checks(df, checks, len(results))
    return ValidationResult(tuple(results), skipped)


def validate_again(
    df: pd.DataFrame, suite: dict, earlier_suite: dict | None, earlier: ValidationResult
) -> ValidationResult:
    """``validate(df, suite, [])`` when ``earlier`` is ``df`` validated against
    ``earlier_suite``: an expectation found there, identical, keeps its result, and only
    the others run (GE takes milliseconds per expectation; retrain validates the new data
    against its own suite and production's, which mostly share expectations)."""
    done = {
        _key(e): r for e, r in zip((earlier_suite or {}).get("expectations", []), earlier.results)
    }
    expectations = suite.get("expectations", [])
    todo = [e for e in expectations if _key(e) not in done]
    fresh = iter(validate(df, {**suite, "expectations": todo}, []).results)
    return ValidationResult(
        tuple(
            replace(done.get(_key(e)) or next(fresh), index=i) for i, e in enumerate(expectations)
        )
    )


def _key(expectation: dict) -> str:
    return json.dumps(
        {k: v for k, v in expectation.items() if k != "id"}, sort_keys=True, default=str
    )


def write(
    result: ValidationResult, folder: Path, *, title: str, rows: int, stem: str = "validation"
) -> None:
    """``<stem>.json`` (machine-readable) and ``<stem>.html`` (for people)."""
    from nb2prod.checks.report import render_html

    data = {
        "success": result.success,
        "rows": rows,
        "skipped": list(result.skipped),
        "results": [_jsonable(r) for r in result.results],
    }
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=1))
    (folder / f"{stem}.html").write_text(
        render_html(result, title=title, rows=rows, source="reference data given to save_model")
    )


def _jsonable(r: ExpectationResult) -> dict[str, Any]:
    d = asdict(r)
    d["unexpected_rows"] = list(r.unexpected_rows[:SAMPLE])
    d["unexpected_count"] = len(r.unexpected_rows)
    d["unexpected_values"] = [scalar(v) for v in r.unexpected_values[:SAMPLE]]
    return d


def read(folder: Path, stem: str = "validation") -> dict[str, Any] | None:
    """The stored ``<stem>.json`` of a model version, or None when it has none."""
    path = folder / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def failures(report: dict[str, Any], severity: str) -> list[str]:
    """Readable lines for the stored report's failures of one severity."""
    lines = []
    for r in report["results"]:
        if r["success"] or r["severity"] != severity:
            continue
        sample = ", ".join(repr(v) for v in r["unexpected_values"][:3])
        where = f"({r['column']})" if r["column"] else ""
        lines.append(
            f"{r['type']}{where}: {r['unexpected_count']} of {report['rows']} row(s) "
            f"fail"
            + (f", e.g. {sample}" if sample else "")
            + (f"; expected {r['expected']}" if r["expected"] else "")
        )
    return lines
