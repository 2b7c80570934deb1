"""The request-path validator: an expectation suite compiled to vectorized numpy code.

``CompiledSuite(suite).validate(df)`` gives the verdicts Great Expectations 1.24 gives on
pandas (the parity tests hold it to that) without importing GE. Compiling turns each
expectation into a closure with its arguments resolved once; validating fetches each
column's array once and runs the closures. GE's rules, replicated here:

- Column-map expectations ignore nulls (None, NaN, NaT, pd.NA; not empty strings, not
  inf): ``mostly`` is the share of *non-null* values that pass, and a column with no
  non-null value passes. ``..._to_be_null`` / ``..._to_not_be_null`` count over all rows.
- Where GE's metric raises (a missing column, a string compared with a number in
  ``..._to_be_between``, text that is not UTF-8), GE reports failure with an
  exception; so do we, naming the rows whose values could not be compared (GE names
  none).
- A configuration GE rejects, or one it fails on any column holding a value (min_value
  above max_value, a type name nobody knows, a regex that does not compile: GE passes
  that one only on a column without values), is refused at compile time with
  ``SuiteError``, so the mistake surfaces at build, not per request.
- Expectations this module cannot run (aggregates such as
  ``expect_column_mean_to_be_between``, ``row_condition``, suite parameters) are not
  dropped: ``unsupported`` lists them and every result names them in ``skipped``.

Checks are registered per type in ``CHECKS`` (papermill's engine registry, in small).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nb2prod.checks.allpass import AllPass
from nb2prod.checks.compilers import CHECKS
from nb2prod.checks.frame import (
    _BATCH_ONLY,
    _IGNORED,
    MAX_VALUES,
    CheckCompilers,
    Evaluate,
    _Frame,
)
from nb2prod.checks.results import SEVERITIES, ExpectationResult, ValidationResult
from nb2prod.checks.suite import SuiteError

__all__ = ["CompiledSuite", "CHECKS", "CheckCompilers", "MAX_VALUES", "SuiteError", "expected_text"]


class _Check:
    """One compiled expectation: where it sits in the suite, and how to run it."""

    __slots__ = ("index", "type", "column", "severity", "expected", "evaluate", "_passed")

    def __init__(
        self, index: int, type_: str, column: Any, severity: str, expected: str, evaluate: Evaluate
    ):
        self.index, self.type, self.column, self.severity = index, type_, column, severity
        self.expected, self.evaluate = expected, evaluate
        self._passed: ExpectationResult | None = None

    def passed(self, n: int) -> ExpectationResult:
        """This expectation's pass on ``n`` rows, without unexpected rows."""
        # A pass depends only on the row count: reuse it (results are immutable).
        passed = self._passed
        if passed is None or passed.element_count != n:
            passed = self._passed = ExpectationResult(
                self.index,
                self.type,
                self.column,
                self.severity,
                True,
                expected=self.expected,
                element_count=n,
            )
        return passed

    def run(self, frame: _Frame) -> ExpectationResult:
        """This expectation's result on ``frame``."""
        ok, rows = self.evaluate(frame)
        if ok and not len(rows):
            return self.passed(frame.n)
        values: tuple = ()
        j = frame.positions.get(self.column) if len(rows) and self.column is not None else None
        if j is not None:
            col = frame.column(j)
            shown = rows[:MAX_VALUES]
            values = tuple(
                col.values[shown].tolist() if col.plain else col.series().iloc[shown].tolist()
            )
        return ExpectationResult(
            self.index,
            self.type,
            self.column,
            self.severity,
            bool(ok),
            tuple(rows.tolist()),
            values,
            self.expected,
            frame.n,
        )


def _mostly(value: Any) -> float:
    mostly = float(value)
    if not 0.0 <= mostly <= 1.0:
        raise ValueError(f"mostly must be between 0 and 1, not {value!r}")
    return mostly


def _compile(index: int, expectation: Any) -> _Check | str:
    """One expectation compiled, or the reason it can only run in batch validation."""
    if (
        not isinstance(expectation, dict)
        or not isinstance(expectation.get("type"), str)
        or not isinstance(expectation.get("kwargs", {}), dict)
    ):
        raise ValueError("an expectation needs a 'type' string and a 'kwargs' object")
    type_, kwargs = expectation["type"], expectation.get("kwargs", {})
    ours = (expectation.get("meta") or {}).get("nb2prod") or {}
    severity = ours.get("severity", "reject")
    if severity not in SEVERITIES:
        raise ValueError(f"meta.nb2prod.severity {severity!r} is not one of {SEVERITIES}")
    if type_ not in CHECKS:
        return "no request-time implementation (aggregate or unknown type)"
    if kwargs.get("row_condition"):
        return "row_condition filters rows first"
    if any(isinstance(v, dict) for v in kwargs.values()):
        return "uses suite parameters"
    compiler = CHECKS.get(type_)
    kw = {k: v for k, v in kwargs.items() if k not in _IGNORED and k not in _BATCH_ONLY}
    unknown = sorted(set(kw) - compiler.kwargs)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; {type_} takes {sorted(compiler.kwargs)}")
    missing = [k for k in compiler.required if kw.get(k) is None]
    if missing:
        raise ValueError(f"missing argument(s) {missing}")
    if "column" in kw and not isinstance(kw["column"], str):
        raise ValueError(f"column must be a string, not {kw['column']!r}")
    if "mostly" in compiler.kwargs:
        kw["mostly"] = _mostly(kw.get("mostly", 1.0))
    evaluate, expected = compiler.build(kw)
    return _Check(index, type_, kw.get("column"), severity, expected, evaluate)


def expected_text(expectation: dict) -> str:
    """What one expectation expects, in words: the compiled check's text, else (for what
    cannot compile) its type and arguments, "column mean to be between (min_value=0)"."""
    try:
        compiled = _compile(0, expectation)
    except (ValueError, TypeError):
        compiled = None
    if isinstance(compiled, _Check):
        return compiled.expected
    args = ", ".join(
        f"{k}={v!r}" for k, v in expectation.get("kwargs", {}).items() if k != "column"
    )
    return expectation["type"].removeprefix("expect_").replace("_", " ") + f" ({args})"


class CompiledSuite:
    """An expectation suite (GE suite JSON as a dict) compiled for the request path.

    ``validate(df)`` returns a ``ValidationResult`` with one result per compiled
    expectation in suite order; ``unsupported`` lists ``(index, type)`` of those that
    only batch validation can run (``unsupported_reasons`` says why). Compiling collects
    every problem in the suite and raises one ``SuiteError``. Safe to share between
    threads: validation keeps no state but a cache of immutable results.
    """

    def __init__(self, suite: dict):
        name = suite.get("name", "suite") if isinstance(suite, dict) else "suite"
        expectations = suite.get("expectations") if isinstance(suite, dict) else None
        if not isinstance(expectations, list):
            raise SuiteError(
                "an expectation suite needs an 'expectations' list",
                where=f"suite {name!r}",
                fix="pass GE suite JSON as a dict",
            )
        self.name = name
        self.unsupported: list[tuple[int, str]] = []
        self.unsupported_reasons: dict[int, str] = {}
        self._checks: list[_Check] = []
        problems = []
        for i, expectation in enumerate(expectations):
            try:
                compiled = _compile(i, expectation)
            except (ValueError, TypeError) as e:
                what = (
                    (expectation.get("type"), (expectation.get("kwargs") or {}).get("column"))
                    if isinstance(expectation, dict)
                    else (None, None)
                )
                problems.append(
                    f"expectation {i} ({what[0]}"
                    + (f", column {what[1]!r}" if what[1] else "")
                    + f"): {e}"
                )
                continue
            if isinstance(compiled, str):
                self.unsupported.append((i, expectation["type"]))
                self.unsupported_reasons[i] = compiled
            else:
                self._checks.append(compiled)
        if problems:
            raise SuiteError(
                f"{len(problems)} problem(s) in the expectation suite:\n- " + "\n- ".join(problems),
                where=f"suite {name!r}",
                fix="correct these expectations where the notebook declares them",
            )
        self._skipped = tuple(t for _, t in self.unsupported)
        self._labels: tuple = (None, [], {})
        self._layout: tuple = (None, None, None)  # columns, dtypes, AllPass for them
        self._all_passed: dict[int, tuple[ExpectationResult, ...]] = {}

    def validate(self, df: pd.DataFrame) -> ValidationResult:
        """Every compiled expectation's verdict on ``df``; rows are 0-based positions."""
        labels = self._labels
        if labels[0] is not df.columns:  # request frames share one column Index: map it once
            names = df.columns.tolist()
            labels = self._labels = (df.columns, names, {c: j for j, c in enumerate(names)})
        frame = _Frame(df, labels[1], labels[2])
        if frame.n:
            fast = self._fast_path(frame)
            if fast is not None and fast.passes(frame):
                return ValidationResult(self._passes(frame.n), self._skipped)
        return ValidationResult(tuple(c.run(frame) for c in self._checks), self._skipped)

    def _fast_path(self, frame: _Frame) -> AllPass | None:
        """The all-pass test for this frame's layout, built once per layout."""
        columns, dtypes, fast = self._layout
        have = frame.dtypes()
        if columns is not frame.df.columns or dtypes != have:
            fast = AllPass.build(self._checks, frame)
            self._layout = (frame.df.columns, have, fast)  # one atomic assignment
        return fast

    def _passes(self, n: int) -> tuple[ExpectationResult, ...]:
        """Every check's pass on ``n`` rows (kept for a few sizes)."""
        results = self._all_passed.get(n)
        if results is None:
            if len(self._all_passed) >= 16:
                self._all_passed = {}
            results = self._all_passed[n] = tuple(c.passed(n) for c in self._checks)
        return results
