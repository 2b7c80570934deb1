"""The prediction path: checks → model → guardrails → fallback.

Bad input is the client's fault: rows failing a ``reject`` check refuse the request
(``RequestRejected``, a 422 listing every failure). A ``fallback`` check sends its rows
to the fallback (reason ``check``); a ``warn`` check lets the model answer and attaches
the warning. The model raising or returning garbage is not the client's fault: those
rows are answered by the fallback and marked so. With no fallback to turn to,
``NoFallbackError`` (a 503) says so plainly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator

import numpy as np
import pandas as pd

from nb2prod.core.jsonify import rows, rows_and_nan, scalar
from nb2prod.core.markers import Marked, spec_of
from nb2prod.runtime.deadline import Deadline, DeadlineExceeded
from nb2prod.runtime.logs import Tracebacks

log = logging.getLogger("nb2prod")


@dataclass
class RequestRejected(Exception):
    """Rows refused by reject-level checks; ``errors`` lists every failure."""

    errors: list[dict[str, Any]]


@dataclass
class NoFallbackError(Exception):
    """The model could not answer some rows and there is no usable fallback."""

    message: str


@dataclass
class Outcome:
    """What the model call gave: its result, or the exception it raised."""

    result: Any = None
    error: BaseException | None = None

    def value(self) -> Any:
        """The result, or the call's exception raised again (its traceback kept)."""
        if self.error is not None:
            raise self.error
        return self.result


Steps = Generator[pd.DataFrame, Outcome, Any]  # yields the rows for the model, gets its Outcome


def drive(steps: Steps, call: Callable[[pd.DataFrame], Outcome]) -> Any:
    """Run ``steps`` to the end, answering each model call with ``call``."""
    try:
        asked = next(steps)
        while True:
            asked = steps.send(call(asked))
    except StopIteration as done:
        return done.value


async def adrive(steps: Steps, call: Callable[[pd.DataFrame], Awaitable[Outcome]]) -> Any:
    """``drive`` on an event loop: each model call is awaited, so the loop serves others."""
    try:
        asked = next(steps)
        while True:
            asked = steps.send(await call(asked))
    except StopIteration as done:
        return done.value


@dataclass
class Findings:
    """What the checks found in one request, row by row, before the model runs."""

    rejected: list[dict[str, Any]] = field(default_factory=list)
    fallback: set[int] = field(default_factory=set)
    warnings: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (check, severity) per row

    def add(self, row: int, severity: str, failure: dict[str, Any]) -> None:
        """Record one row's failure of one check under its severity."""
        self.failures.append((failure["check"], severity))
        if severity == "reject":
            self.rejected.append(
                {
                    "loc": ["records", row]
                    + ([failure["column"]] if failure.get("column") else []),
                    "type": "check",
                    **failure,
                }
            )
        elif severity == "fallback":
            self.fallback.add(row)
        else:
            self.warnings.setdefault(row, []).append(failure)


def _source(reason: str | None, review: bool) -> str:
    if reason is None:
        return "model"
    return "pending_review" if review and reason == "low_confidence" else "fallback"


def _verdict(name: str, value: Any, n: int) -> np.ndarray:
    """A check's or guardrail's result as ``n`` booleans (one bool broadcasts)."""
    if isinstance(value, (bool, np.bool_)):
        return np.full(n, bool(value))
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(
            f"{name}() returned shape {arr.shape}; expected one bool per row ({n}) or a single bool"
        )
    return arr.astype(bool)


@dataclass(frozen=True)
class Policy:
    """When the model's answer is not used: a deadline and a confidence floor.

    ``low_confidence`` is ``"fallback"`` (the fallback answers) or ``"review"`` (the row
    comes back as ``pending_review`` with no prediction, for a person to decide).
    """

    timeout_s: float | None = None
    min_confidence: float | None = None
    low_confidence: str = "fallback"


class Predictor:
    """Answers a batch of validated rows with the notebook's marked functions.

    ``validator`` is a compiled expectation suite (``CompiledSuite``) or None;
    ``on_failures`` receives every request's ``(check, severity)`` failures (metrics);
    ``version`` (the model tag) is what the log counts failures per.
    """

    def __init__(
        self,
        model: Any,
        marked: Marked,
        validator: Any = None,
        on_failures: Callable[[list[tuple[str, str]]], None] | None = None,
        policy: Policy = Policy(),
        version: str = "",
    ):
        if marked.model is None:
            raise ValueError("no @n2p.model function to serve")
        self.model = model
        self.marked = marked
        self.validator = validator
        self.on_failures = on_failures
        self.policy = policy
        self.version = version
        self.tracebacks = Tracebacks()
        self.deadline = Deadline(policy.timeout_s) if policy.timeout_s else None

    def inspect(self, X: pd.DataFrame) -> Findings:
        """Run the suite and the ``@n2p.check`` functions; every failure, per row."""
        found = Findings()
        if self.validator is not None:
            for res in self.validator.validate(X).failed():
                rows_hit = res.unexpected_rows or range(len(X))  # table-level: every row
                column = X[res.column].tolist() if res.column in X else None  # once, not per row
                for i in rows_hit:
                    value = scalar(column[i]) if column is not None else None
                    found.add(
                        int(i),
                        res.severity,
                        {
                            "check": res.type,
                            "column": res.column,
                            "value": value,
                            "expected": res.expected,
                            "msg": f"{res.column!r} = {value!r}, expected {res.expected}",
                        },
                    )
        for fn in self.marked.checks:
            ok = _verdict(fn.__name__, fn(X), len(X))
            for i in np.flatnonzero(~ok):
                found.add(
                    int(i),
                    getattr(spec_of(fn), "severity", None) or "reject",
                    {"check": fn.__name__, "msg": f"row {int(i)} fails check {fn.__name__}()"},
                )
        if found.failures and self.on_failures:
            self.on_failures(found.failures)
        return found

    def predict(
        self, X: pd.DataFrame, model_input: pd.DataFrame | None = None
    ) -> list[dict[str, Any]]:
        """``steps`` run here and now: the model called in this thread (under the deadline)."""
        return drive(self.steps(X, model_input), self.call_model)

    def call_model(self, X: pd.DataFrame) -> Outcome:
        """The model function on ``X``, under the deadline when there is one."""
        fn = self.marked.model
        assert fn is not None  # Predictor refuses a code module without one
        try:
            return Outcome(
                self.deadline.call(fn, self.model, X) if self.deadline else fn(self.model, X)
            )
        except Exception as exc:
            return Outcome(error=exc)

    async def acall_model(self, X: pd.DataFrame) -> Outcome:
        """``call_model`` awaited: with a deadline the model runs in its thread meanwhile."""
        fn = self.marked.model
        assert fn is not None
        try:
            if self.deadline:
                return Outcome(await self.deadline.acall(fn, self.model, X))
            return Outcome(fn(self.model, X))
        except Exception as exc:
            return Outcome(error=exc)

    def steps(self, X: pd.DataFrame, model_input: pd.DataFrame | None = None) -> Steps:
        """One ``{"prediction", "source", "reason", "warnings"}`` per row of ``X``, as a
        generator that yields the rows the model must answer and is sent its ``Outcome``
        (``drive`` and ``adrive`` run it: one logic for threads and the event loop).

        The checks see ``X`` as the request gave it; the model, its guardrails and the
        fallback see ``model_input`` (default ``X``), the same rows in the training
        dtypes: ``FrameMaker.for_model`` turns a category training never had into a
        missing value there, after the checks have reported it by value.
        """
        n = len(X)
        found = self.inspect(X)
        if found.rejected:
            raise RequestRejected(found.rejected)
        X = X if model_input is None else model_input
        checked = found.fallback
        reasons: list[str | None] = (
            ["check" if i in checked else None for i in range(n)] if checked else [None] * n
        )
        answers: list[Any] = [None] * n
        todo = [i for i in range(n) if reasons[i] is None] if checked else list(range(n))
        if todo:
            asked = X if len(todo) == n else X.iloc[todo].reset_index(drop=True)
            self._model(asked, (yield asked), todo, reasons, answers)
        review = self.policy.low_confidence == "review"
        bad = [
            i
            for i, r in enumerate(reasons)
            if r is not None and not (review and r == "low_confidence")
        ]
        if bad:
            for i, value in zip(
                bad,
                self._run_fallback(X.iloc[bad].reset_index(drop=True), [reasons[i] for i in bad]),
            ):
                answers[i] = value
        warned = found.warnings
        return [
            # the common row, the model's answer without warnings, takes no lookups
            {"prediction": a, "source": "model", "reason": None, "warnings": []}
            if r is None and not warned
            else {
                "prediction": None if source == "pending_review" else a,
                "source": source,
                "reason": r,
                "warnings": warned.get(i, []),
            }
            for i, (a, r) in enumerate(zip(answers, reasons))
            for source in ["model" if r is None else _source(r, review)]
        ]

    def _model(
        self,
        X: pd.DataFrame,
        outcome: Outcome,
        positions: list[int],
        reasons: list[str | None],
        answers: list[Any],
    ) -> None:
        """Take the model's ``outcome`` for ``X`` (the rows at ``positions``); mark rows it
        could not answer."""
        model = self.marked.model
        assert model is not None  # Predictor refuses a code module without one
        try:
            result = outcome.value()
            got, nan = rows_and_nan(result, len(X))
        except DeadlineExceeded as exc:
            log.warning(
                "model function %s(): %s; using the fallback for %d row(s)",
                model.__name__,
                exc,
                len(X),
            )
            for i in positions:
                reasons[i] = "timeout"
            return
        except Exception as exc:
            self._failed(
                f"{model.__name__}()",
                exc,
                f"model function {model.__name__}() failed on {len(X)} row(s); using the fallback",
            )
            for i in positions:
                reasons[i] = "error"
            return
        for i, value, garbage in zip(positions, got, nan.tolist()):
            answers[i] = value
            if garbage:  # a NaN out: the model's answer for this row is unusable
                reasons[i] = "error"
        self._confidence(result, positions, reasons)
        for fn in self.marked.guardrails:
            try:
                ok = _verdict(fn.__name__, fn(X, result), len(X))
            except Exception as exc:  # an unverifiable answer is not trusted
                self._failed(
                    f"{fn.__name__}()", exc, f"guardrail {fn.__name__}() raised; all rows fail it"
                )
                ok = np.zeros(len(X), dtype=bool)
            for j in np.flatnonzero(~ok):
                reasons[positions[j]] = reasons[positions[j]] or "guardrail"

    def _failed(self, site: str, exc: BaseException, what: str) -> None:
        self.tracebacks.failed(log, self.version, site, exc, what)

    def _confidence(self, result: Any, positions: list[int], reasons: list[str | None]) -> None:
        floor = self.policy.min_confidence
        if floor is None or not isinstance(result, pd.DataFrame) or "confidence" not in result:
            return
        low = ~(result["confidence"].to_numpy(dtype=float) >= floor)  # NaN counts as low
        for j in np.flatnonzero(low):
            reasons[positions[j]] = reasons[positions[j]] or "low_confidence"

    def _run_fallback(self, X: pd.DataFrame, reasons: list[str | None]) -> list[Any]:
        fn = self.marked.fallback
        why = ", ".join(sorted({str(r) for r in reasons}))
        if fn is None:
            raise NoFallbackError(
                f"the model could not answer {len(X)} row(s) ({why}) and the "
                "notebook defines no @n2p.fallback"
            )
        try:
            return rows(fn(X), len(X))
        except Exception as exc:
            self._failed(
                f"{fn.__name__}()", exc, f"fallback {fn.__name__}() failed on {len(X)} row(s)"
            )
            raise NoFallbackError(
                f"the model could not answer {len(X)} row(s) ({why}) and "
                f"the fallback {fn.__name__}() failed too; see the server log"
            ) from None  # logged above with its traceback; the client gets no traceback
