"""From validated records (``records.record_type``) back to a DataFrame.

A categorical value training never saw is accepted by the record type. ``FrameMaker``
gives the checks such a value as it came (the column's categories are the training ones
plus the request's new values) and ``FrameMaker.for_model`` gives the model the training
categories only, where an unseen value is missing (NaN): the dtype the model was fitted
on, whatever the request held.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nb2prod.core.spec import ColumnSpec
from nb2prod.runtime.rows import Rows

_PANDAS = {"float": "float64", "integer": "int64", "boolean": "bool", "datetime": "datetime64[ns]"}


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
