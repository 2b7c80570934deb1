"""Turn model outputs into JSON-ready Python values, fast, with NaN as null."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# scalars are shared with the JSON text the audit log writes, which needs no pandas
from nb2prod.core.jsontext import scalar

__all__ = ["frame", "rows", "rows_and_nan", "scalar"]


def rows(output: Any, n: int) -> list[Any]:
    """Split a model/fallback output into ``n`` JSON-ready rows.

    A DataFrame gives one dict per row; a 1-D array, Series or list gives one scalar
    per row. Anything else, or the wrong number of rows, raises ``ValueError``.
    """
    return rows_and_nan(output, n)[0]


def rows_and_nan(output: Any, n: int) -> tuple[list[Any], np.ndarray]:
    """``rows(output, n)``, and which rows held a NaN in a float column (``n`` bools):
    the model's garbage, found in the same pass over the columns."""
    nan = np.zeros(n, dtype=bool)
    if isinstance(output, pd.DataFrame):
        if len(output) != n:
            raise ValueError(f"returned {len(output)} rows for {n} inputs")
        names = _names(output.columns)
        # Column by column: tolist() unboxes to Python scalars far faster than to_dict.
        columns = [_plain(values, nan) for values in _arrays(output)]
        return _records(names, columns, n), nan
    if isinstance(output, (pd.Series, np.ndarray, list, tuple)):
        values = np.asarray(output)
        if values.ndim != 1:
            raise ValueError(
                f"returned an array of shape {values.shape}; expected 1-D "
                "(one value per row) or a DataFrame"
            )
        if len(values) != n:
            raise ValueError(f"returned {len(values)} values for {n} inputs")
        return _plain(values, nan), nan
    raise ValueError(
        f"returned {type(output).__name__}; expected a DataFrame, Series, "
        "array or list with one entry per input row"
    )


def _records(names: list[str], columns: list[list[Any]], n: int) -> list[dict[str, Any]]:
    """One dict per row from the columns' values. Two columns (a label and its probability)
    is the common model output: a dict display builds those 3x faster than ``dict(zip())``,
    ~3 ms of a 10,000-row request (a repeated name keeps its last value either way)."""
    if len(columns) == 2:
        first, second = names
        return [{first: a, second: b} for a, b in zip(*columns)]
    return [dict(zip(names, row)) for row in zip(*columns)] if columns else [{} for _ in range(n)]


def _arrays(df: pd.DataFrame) -> list[Any]:
    """Each column of ``df`` as an array, by position (duplicate names are fine): numpy,
    or pandas' own for a pyarrow-backed string column (``_plain`` unboxes it directly)."""
    column = getattr(df, "_get_column_array", None)  # pandas internal: df[c] costs 5x more
    if column is None:
        return [df.iloc[:, j].to_numpy() for j in range(df.shape[1])]
    return [_numpy_unless_arrow(column(j)) for j in range(df.shape[1])]


def _names(columns: pd.Index) -> list[str]:
    """The column labels as ``str``s (pandas 3's str labels: straight from pyarrow)."""
    labels = columns.array
    if isinstance(labels, _ARROW_STRINGS):
        chunks = labels.__arrow_array__()
        if chunks.null_count == 0:
            return chunks.to_pylist()
    return [str(c) for c in columns]


def _numpy_unless_arrow(values: Any) -> Any:
    return values if isinstance(values, _ARROW_STRINGS) else np.asarray(values)


# pandas 3's default string column (and StringDtype("pyarrow")): through numpy, an object
# array of the same Python strings costs ~10 us a column; pyarrow's to_pylist ~1 us.
_ARROW_STRINGS = getattr(pd.arrays, "ArrowStringArray", ())


def _plain(values: Any, nan: np.ndarray | None = None) -> list[Any]:
    """One column as JSON-ready Python values; only columns that can hold NaN are scanned.
    A float column's NaN rows are also marked in ``nan``."""
    if isinstance(values, _ARROW_STRINGS):
        chunks = values.__arrow_array__()
        if chunks.null_count == 0:  # plain str throughout: what scalar() would keep
            return chunks.to_pylist()
        values = np.asarray(values)  # nulls: as numpy gives them (NaN or NA), as before
    if values.dtype.kind in "biu":
        return values.tolist()
    if values.dtype.kind == "f":
        out = values.tolist()
        missing = np.isnan(values)
        if not missing.any():
            return out
        if nan is not None:
            nan |= missing
        return [None if v != v else v for v in out]
    if values.dtype.kind in "mM":  # tolist() would give integers
        return [scalar(v) for v in pd.Series(values)]
    # scalar() keeps a str as it is: the common object column costs one type check a value
    return [v if type(v) is str else scalar(v) for v in values.tolist()]


def frame(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Input rows as JSON-ready dicts (used for stored examples)."""
    return [{k: scalar(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
