"""From a stored contract to the request's record type and back to a DataFrame.

Records are ``TypedDict``s so pydantic validates them into plain dicts (cheap to turn
into a DataFrame) while ``/docs.json`` still documents every real column and type.

A categorical column is typed by its categories' JSON type, not as a closed set: a value
training never saw is a question for the input checks (the suite's value set, ``warn``
when drafted), not a schema 400. ``/docs.json`` lists the known values as ``examples``
and in the description. ``FrameMaker`` gives the checks such a value as it came (the
column's categories are the training ones plus the request's new values) and
``FrameMaker.for_model`` gives the model the training categories only, where an unseen
value is missing (NaN): the dtype the model was fitted on, whatever the request held.
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Annotated, Any, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from nb2prod.core.spec import ColumnSpec
from nb2prod.runtime.rows import Rows

# an integer column is int64 in the frame: JSON's larger integers are a 400, not a crash
_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_PYTHON = {"integer": _INT64, "boolean": bool, "string": str, "datetime": datetime}
_PANDAS = {"float": "float64", "integer": "int64", "boolean": "bool", "datetime": "datetime64[ns]"}
_FINITE = Annotated[float, Field(allow_inf_nan=False)]
_SHOWN = 30  # known values listed in /docs.json per categorical column


def _field_type(col: ColumnSpec) -> Any:
    if col.dtype == "category" and col.categories:
        return _category_type(col)
    kind = _FINITE if col.dtype == "float" else _PYTHON.get(col.dtype, str)
    return Optional[kind] if col.nullable else kind


def _category_type(col: ColumnSpec) -> Any:
    """The JSON type of the column's categories, open to values training never had."""
    known = [v.item() if isinstance(v, np.generic) else v for v in col.categories or ()]
    # bool before int: True is an int to Python, but a JSON boolean is not a number
    kinds = sorted(
        {
            "boolean"
            if isinstance(v, bool)
            else "integer"
            if isinstance(v, int)
            else "float"
            if isinstance(v, float)
            else "string"
            for v in known
        }
    )
    types = [_FINITE if k == "float" else _PYTHON[k] for k in kinds]
    kind: Any = types[0] if len(types) == 1 else Union[tuple(types)]
    shown = ", ".join(map(str, known[:_SHOWN])) + (
        f", … ({len(known)} in all)" if len(known) > _SHOWN else ""
    )
    return Annotated[
        Optional[kind] if col.nullable else kind,
        Field(
            description=f"known values: {shown}; others are accepted and handled by the "
            "input checks",
            examples=known[:_SHOWN],
        ),
    ]


def record_type(columns: tuple[ColumnSpec, ...], name: str) -> type:
    """A TypedDict with one required key per column; unknown keys are refused."""
    record = TypedDict(f"{name}Record", {c.name: _field_type(c) for c in columns})  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return record


class FrameMaker:
    """Turns validated records into a DataFrame with the reference's column order and dtypes.

    A categorical column gets the training categories, plus, in the rare request that
    brings values training never had, those values as further categories: the checks
    see ``"fax"``, not a NaN. ``for_model`` then gives the model the training categories
    only (``"fax"`` missing), so it always sees the dtype it was fitted on.
    """

    def __init__(self, columns: tuple[ColumnSpec, ...]):
        self.names = [c.name for c in columns]
        self.index = pd.Index(self.names)
        self.targets = {c.name: self._target(c) for c in columns}
        # The common case, every column a float: one numpy array, no per-column work.
        self.all_float = all(c.dtype == "float" for c in columns)
        # One C call per record for its values in column order (a tuple; one value: a scalar)
        self.values = itemgetter(*self.names) if self.names else (lambda r: ())
        self.keys = tuple(self.names)
        self.categorical = {
            n: t for n, t in self.targets.items() if isinstance(t, pd.CategoricalDtype)
        }

    @staticmethod
    def _target(col: ColumnSpec) -> Any:
        if col.dtype == "category":
            return pd.CategoricalDtype(list(col.categories or ()))
        if col.nullable and col.dtype in ("integer", "boolean"):
            return "Int64" if col.dtype == "integer" else "boolean"
        return _PANDAS.get(col.dtype)

    def array(self, records: Sequence[dict[str, Any]]) -> np.ndarray | None:
        """Every column a float: the records' values as one ``n x k`` float array in column
        order (None, a null in a nullable column, becomes NaN); None for other columns.

        Made once per request: the frame is a copy of it (``__call__``), and the audit
        log stores it as the request's input table (``in_order`` says when it may)."""
        if not self.all_float:
            return None
        if isinstance(records, Rows):  # decoded into the array already
            return records.values
        values = np.array(list(map(self.values, records)), dtype=float)
        return values.reshape(len(records), len(self.names))

    def in_order(self, records: Sequence[dict[str, Any]]) -> bool:
        """Whether ``array(records)``'s rows are the records as the audit log's table
        keeps them: every record has exactly these columns (``array`` found each of them
        in every record), the first one in this order. Validated records always do."""
        if isinstance(records, Rows):
            return True
        return (
            len(records) > 0
            and tuple(records[0]) == self.keys
            and set(map(len, records)) == {len(self.names)}
        )

    def __call__(
        self, records: Sequence[dict[str, Any]], values: np.ndarray | None = None
    ) -> pd.DataFrame:
        """The records as a frame; ``values``, their ``array`` when the caller has it, is
        copied: the notebook's code may change the frame in place, and the caller keeps
        the array as the request gave it."""
        if self.all_float:
            own = values is None and not isinstance(records, Rows)
            values = self.array(records) if values is None else values
            assert values is not None  # every column is a float
            # copy=False: the array is this call's own (pandas 3 would copy it again)
            return pd.DataFrame(values if own else values.copy(), columns=self.index, copy=False)
        X = pd.DataFrame.from_records(records, columns=self.names)
        # Cast only columns whose dtype differs, in one pass over X.dtypes; categoricals
        # are coded below (astype to a category dtype costs ~350 us a column, and pandas
        # deprecates it for values outside the categories).
        casts = {
            c: self.targets[c]
            for c, have in zip(self.names, X.dtypes)
            if self.targets[c] is not None and have != self.targets[c] and c not in self.categorical
        }
        X = X.astype(casts) if casts else X
        for name, dtype in self.categorical.items():
            X[name] = _coded(X[name].to_numpy(), dtype)
        return X

    def for_model(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with every categorical column back to the training categories (a value
        training never had becomes missing); ``X`` itself when nothing needs it."""
        back = {
            name: column.cat.set_categories(dtype.categories)
            for name, dtype in self.categorical.items()
            for column in [X[name]]
            if column.dtype is not dtype and column.dtype != dtype
        }
        return X.assign(**back) if back else X


def _coded(values: np.ndarray, dtype: pd.CategoricalDtype) -> pd.Categorical:
    """``values`` as a Categorical of ``dtype``; values outside its categories (not nulls)
    become further categories, so the checks see and report them as they came."""
    codes = dtype.categories.get_indexer(values)
    missing = codes < 0
    if missing.any():  # rare: a null, or a value training never had
        lost = missing & pd.notna(values)
        if lost.any():
            new = pd.unique(values[lost]).tolist()
            return pd.Categorical(values, categories=[*dtype.categories, *new])
    return pd.Categorical.from_codes(codes, dtype=dtype)
