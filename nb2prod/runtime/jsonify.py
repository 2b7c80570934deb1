"""Turn model outputs into JSON-ready Python values, fast, with NaN as null."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def scalar(value: Any) -> Any:
    """A JSON-ready Python scalar: numpy types unboxed, NaN/NaT as None, times as ISO."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is None:
        return None
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return value


def rows(output: Any, n: int) -> list[Any]:
    """Split a model/fallback output into ``n`` JSON-ready rows.

    A DataFrame gives one dict per row; a 1-D array, Series or list gives one scalar
    per row. Anything else, or the wrong number of rows, raises ``ValueError``.
    """
    if isinstance(output, pd.DataFrame):
        if len(output) != n:
            raise ValueError(f"returned {len(output)} rows for {n} inputs")
        records = output.to_dict(orient="records")
        if output.isna().to_numpy().any():
            records = [{k: scalar(v) for k, v in r.items()} for r in records]
        return [{str(k): v for k, v in r.items()} for r in records] \
            if not all(isinstance(c, str) for c in output.columns) else records
    if isinstance(output, (pd.Series, np.ndarray, list, tuple)):
        values = np.asarray(output)
        if values.ndim != 1:
            raise ValueError(f"returned an array of shape {values.shape}; expected 1-D "
                             "(one value per row) or a DataFrame")
        if len(values) != n:
            raise ValueError(f"returned {len(values)} values for {n} inputs")
        return [scalar(v) for v in values.tolist()]
    raise ValueError(f"returned {type(output).__name__}; expected a DataFrame, Series, "
                     "array or list with one entry per input row")


def frame(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Input rows as JSON-ready dicts (used for stored examples)."""
    return [{k: scalar(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
