"""A large all-float ``/predict`` body straight into one array: ``FloatBodies`` and ``Rows``.

pydantic-core validates a body into one dict per record; for 10,000 records of 30
floats that validation, then walking the dicts again for the frame and again for the
audit log's table, cost more than the model. When every column is a float (the
common contract), ``FloatBodies.decode`` parses the body with orjson and checks it in a
few C-speed passes, giving ``Rows``: the records as one float array in column order,
which the frame copies and the audit log stores as it is.

It only ever *accepts*: a body it cannot vouch for (not JSON as orjson reads it, another
shape, a missing or unknown key, a value that is not a finite number, a null, a boolean
or a string) gives None, and the caller validates it with pydantic-core as before, so a
refused body gets exactly the 400 it always got, and an accepted one the same values.
"""

from __future__ import annotations

from array import array
from itertools import chain
from operator import itemgetter
from typing import Any, Iterator, Sequence, overload

import numpy as np
import orjson

from nb2prod.core.spec import ColumnSpec


class Rows(Sequence[dict[str, Any]]):
    """A request's records held as ``values``, an ``n x k`` float64 array in the order of
    ``names``. Read as a sequence, each record is the dict pydantic-core would have given
    (the columns in order, each value a float), made when asked: the request path itself
    reads only ``values``."""

    def __init__(self, names: Sequence[str], values: np.ndarray):
        self.names, self.values = tuple(names), values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [dict(zip(self.names, row)) for row in self.values[i].tolist()]
        return dict(zip(self.names, self.values[i].tolist()))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = self.names
        return (dict(zip(names, row)) for row in self.values.tolist())


class FloatBodies:
    """The decoder of ``{"records": [...]}`` bodies for columns that are all non-nullable
    floats, accepting only what the contract's pydantic validator accepts (``wire``:
    strict, no unknown keys, 1 to ``max_records`` records); see the module doc."""

    def __init__(self, columns: Sequence[ColumnSpec], max_records: int):
        self.names = [c.name for c in columns]
        self.max_records = max_records
        self.usable = bool(columns) and all(c.dtype == "float" and not c.nullable for c in columns)
        self._values = itemgetter(*self.names) if self.names else None

    def decode(self, raw: bytes) -> dict[str, Rows] | None:
        """``{"records": Rows}`` for a body this decoder can vouch for, else None."""
        if not self.usable or self._values is None:
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(body) is not dict or len(body) != 1 or type(body.get("records")) is not list:
            return None
        records = body["records"]
        k = len(self.names)
        if not 1 <= len(records) <= self.max_records or set(map(type, records)) != {dict}:
            return None
        if set(map(len, records)) != {k}:  # with every name present (below): no other key
            return None
        picked = map(self._values, records)  # a tuple per record; one column: its value
        try:
            # array("d") takes ints and floats only: a string, null, list or object
            # raises TypeError, a missing column KeyError, an int past float OverflowError
            flat = array("d", chain.from_iterable(picked) if k > 1 else picked)
        except (KeyError, TypeError, OverflowError):
            return None
        values = np.frombuffer(flat, dtype=np.float64).reshape(len(records), k)
        if not np.isfinite(values).all() or _has_bool(values, records, self.names):
            return None
        return {"records": Rows(self.names, values)}


def _has_bool(values: np.ndarray, records: list[dict[str, Any]], names: list[str]) -> bool:
    """Whether a JSON ``true`` or ``false`` was taken as 1.0 or 0.0 (Python's bool is an
    int): only the values equal to 0 or 1 are looked at, a few in real data."""
    rows, cols = np.nonzero((values == 0.0) | (values == 1.0))
    return any(type(records[i][names[j]]) is bool for i, j in zip(rows.tolist(), cols.tolist()))
