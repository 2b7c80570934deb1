"""Build-time contract drafting: input schema from reference data, and the gate verdict."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from pandas.api import types as ptypes

from nb2prod.core.errors import Nb2prodError
from nb2prod.core.spec import ColumnSpec, GateResult, Threshold


def infer_columns(reference: pd.DataFrame) -> tuple[ColumnSpec, ...]:
    """One ``ColumnSpec`` per column of ``reference``: type, nullability, categories."""
    if not isinstance(reference, pd.DataFrame) or reference.empty:
        raise Nb2prodError(
            "save_model(reference=...) needs a non-empty pandas DataFrame of "
            f"model inputs, got {type(reference).__name__}",
            fix="pass the training inputs, e.g. reference=X_train",
        )
    columns = []
    for name in reference.columns:
        if not isinstance(name, str):
            raise Nb2prodError(
                f"column name {name!r} is not a string; requests are JSON "
                "records, so every input column needs a string name",
                fix="rename the columns, e.g. X.columns = X.columns.astype(str)",
            )
        series = reference[name]
        columns.append(
            ColumnSpec(name, _dtype_of(series), bool(series.isna().any()), _categories_of(series))
        )
    return tuple(columns)


def _dtype_of(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "integer"
    if ptypes.is_float_dtype(dtype):
        return "float"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _categories_of(series: pd.Series) -> tuple[Any, ...] | None:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return tuple(series.cat.categories.tolist())
    return None


def as_threshold(metric: str, value: Any) -> Threshold:
    """A gate entry: a plain number means "at least"; ``at_most(x)`` means at most."""
    if isinstance(value, Threshold):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Threshold(float(value))
    raise Nb2prodError(
        f"gate[{metric!r}] = {value!r} is not a number or n2p.at_most(...)",
        fix=f'write gate={{"{metric}": 0.9}} or gate={{"{metric}": n2p.at_most(0.9)}}',
    )


def evaluate_gate(
    gate: Mapping[str, Any] | None, metrics: Mapping[str, Any]
) -> tuple[GateResult, ...]:
    """Compare ``metrics`` to ``gate``; a gate metric missing from ``metrics`` is an error."""
    results = []
    for metric, raw in (gate or {}).items():
        threshold = as_threshold(metric, raw)
        if metric not in metrics:
            raise Nb2prodError(
                f"the gate names {metric!r} but metrics has no such key "
                f"(metrics: {', '.join(metrics) or 'none'})",
                fix=f"add {metric!r} to metrics=... or remove it from gate=...",
            )
        value = float(metrics[metric])
        results.append(GateResult(metric, value, threshold, threshold.passes(value)))
    return tuple(results)
