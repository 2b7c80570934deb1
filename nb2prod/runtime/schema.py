"""From a stored contract to the request's record type and back to a DataFrame.

Records are ``TypedDict``s so pydantic validates them into plain dicts (cheap to turn
into a DataFrame) while ``/docs.json`` still documents every real column and type.
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Annotated, Any, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from ..spec import ColumnSpec

_PYTHON = {"integer": int, "boolean": bool, "string": str, "datetime": datetime}
_PANDAS = {"float": "float64", "integer": "int64", "boolean": "bool", "datetime": "datetime64[ns]"}


def _field_type(col: ColumnSpec) -> Any:
    if col.dtype == "float":
        kind: Any = Annotated[float, Field(allow_inf_nan=False)]
    elif col.dtype == "category" and col.categories:
        kind = Literal[tuple(col.categories)]  # type: ignore[valid-type]
    else:
        kind = _PYTHON.get(col.dtype, str)
    return Optional[kind] if col.nullable else kind


def record_type(columns: tuple[ColumnSpec, ...], name: str) -> type:
    """A TypedDict with one required key per column; unknown keys are refused."""
    record = TypedDict(f"{name}Record", {c.name: _field_type(c) for c in columns})  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return record


class FrameMaker:
    """Turns validated records into a DataFrame with the reference's column order and dtypes."""

    def __init__(self, columns: tuple[ColumnSpec, ...]):
        self.names = [c.name for c in columns]
        self.index = pd.Index(self.names)
        self.targets = {c.name: self._target(c) for c in columns}
        # The common case, every column a float: one numpy array, no per-column work.
        self.all_float = all(c.dtype == "float" for c in columns)
        # One C call per record for its values in column order (a tuple; one value: a scalar)
        self.values = itemgetter(*self.names) if self.names else (lambda r: ())

    @staticmethod
    def _target(col: ColumnSpec) -> Any:
        if col.dtype == "category":
            return pd.CategoricalDtype(list(col.categories or ()))
        if col.nullable and col.dtype in ("integer", "boolean"):
            return "Int64" if col.dtype == "integer" else "boolean"
        return _PANDAS.get(col.dtype)

    def __call__(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        if self.all_float:  # None (a null in a nullable column) becomes NaN
            values = np.array(list(map(self.values, records)), dtype=float)
            return pd.DataFrame(values.reshape(len(records), len(self.names)),
                                columns=self.index)
        X = pd.DataFrame.from_records(records, columns=self.names)
        # Cast only columns whose dtype differs, in one pass over X.dtypes.
        casts = {c: self.targets[c] for c, have in zip(self.names, X.dtypes)
                 if self.targets[c] is not None and have != self.targets[c]}
        return X.astype(casts) if casts else X
