"""The prediction path: checks → model → guardrails → fallback, one row at a time in spirit.

Bad input is the client's fault (``RequestRejected``, a 4xx); the model raising or
returning garbage is not: those rows are answered by the fallback and marked so. With no
fallback to turn to, ``NoFallbackError`` (a 503) says so plainly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..markers import Marked
from .jsonify import rows, scalar

log = logging.getLogger("nb2prod")


@dataclass
class RequestRejected(Exception):
    """Rows refused by a reject-level check; ``errors`` lists every failure."""

    errors: list[dict[str, Any]]


@dataclass
class NoFallbackError(Exception):
    """The model could not answer some rows and there is no usable fallback."""

    message: str


def _verdict(name: str, value: Any, n: int) -> np.ndarray:
    """A check's or guardrail's result as ``n`` booleans (one bool broadcasts)."""
    if isinstance(value, (bool, np.bool_)):
        return np.full(n, bool(value))
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"{name}() returned shape {arr.shape}; expected one bool per row "
                         f"({n}) or a single bool")
    return arr.astype(bool)


class Predictor:
    """Answers a batch of validated rows with the notebook's marked functions."""

    def __init__(self, model: Any, marked: Marked):
        if marked.model is None:
            raise ValueError("no @n2p.model function to serve")
        self.model = model
        self.marked = marked

    def check(self, X: pd.DataFrame) -> None:
        """Run reject-level checks; raise ``RequestRejected`` listing every failing row."""
        errors = []
        for fn in self.marked.checks:
            ok = _verdict(fn.__name__, fn(X), len(X))
            for i in np.flatnonzero(~ok):
                errors.append({"loc": ["records", int(i)], "type": "check",
                               "check": fn.__name__,
                               "msg": f"row {int(i)} fails check {fn.__name__}()"})
        if errors:
            raise RequestRejected(errors)

    def predict(self, X: pd.DataFrame) -> list[dict[str, Any]]:
        """One ``{"prediction", "source", "reason"}`` per row of ``X``."""
        self.check(X)
        n = len(X)
        reasons: list[str | None] = [None] * n
        try:
            result = self.marked.model(self.model, X)
            answers = rows(result, n)
        except Exception:
            log.exception("model function %s() failed on %d row(s); using the fallback",
                          self.marked.model.__name__, n)
            return self._fallback(X, ["error"] * n, [None] * n)
        for fn in self.marked.guardrails:
            try:
                ok = _verdict(fn.__name__, fn(X, result), n)
            except Exception:  # an unverifiable answer is not trusted
                log.exception("guardrail %s() raised; treating all rows as failed", fn.__name__)
                ok = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(~ok):
                reasons[i] = reasons[i] or "guardrail"
        return self._fallback(X, reasons, answers)

    def _fallback(self, X: pd.DataFrame, reasons: list[str | None],
                  answers: list[Any]) -> list[dict[str, Any]]:
        bad = [i for i, r in enumerate(reasons) if r is not None]
        if bad:
            fallen = self._run_fallback(X.iloc[bad], [reasons[i] for i in bad])
            for i, value in zip(bad, fallen):
                answers[i] = value
        return [{"prediction": a, "source": "model" if r is None else "fallback", "reason": r}
                for a, r in zip(answers, reasons)]

    def _run_fallback(self, X: pd.DataFrame, reasons: list[str | None]) -> list[Any]:
        fn = self.marked.fallback
        why = ", ".join(sorted({str(r) for r in reasons}))
        if fn is None:
            raise NoFallbackError(f"the model could not answer {len(X)} row(s) ({why}) and the "
                                  "notebook defines no @n2p.fallback")
        try:
            return rows(fn(X), len(X))
        except Exception:
            log.exception("fallback %s() failed on %d row(s)", fn.__name__, len(X))
            raise NoFallbackError(f"the model could not answer {len(X)} row(s) ({why}) and "
                                  f"the fallback {fn.__name__}() failed too; see the server log")


__all__ = ["Predictor", "RequestRejected", "NoFallbackError", "scalar"]
