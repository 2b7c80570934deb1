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

import re
from array import array
from itertools import chain
from operator import itemgetter
from typing import Any, Iterator, Sequence, overload

import numpy as np
import orjson

from nb2prod.core.spec import ColumnSpec

PIECE_BYTES = 256 * 1024  # ~300 flagship records: ~1 ms of orjson with the GIL held
_WS = rb"[ \t\n\r]*"  # JSON's whitespace (``\s`` would take \x0b and \x0c too)
_HEAD = re.compile(_WS + rb"\{" + _WS + rb'"records"' + _WS + rb":" + _WS + rb"\[" + _WS)
_TAIL = re.compile(_WS + rb"\]" + _WS + rb"\}" + _WS + rb"\Z")
_BETWEEN = re.compile(rb"\}" + _WS + rb"," + _WS + rb"\{")  # two records meet here


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
        values = self._in_pieces(raw) if len(raw) > 2 * PIECE_BYTES else None
        if values is None:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            if type(body) is not dict or len(body) != 1 or type(body.get("records")) is not list:
                return None
            values = self._block(body["records"])
        if values is None or not 1 <= len(values) <= self.max_records:
            return None
        return {"records": Rows(self.names, values)}

    def _in_pieces(self, raw: bytes) -> np.ndarray | None:
        """The values of a large body parsed a few hundred KiB of records at a time, so
        the event loop gets the GIL between pieces (one orjson call on 9 MB holds it for
        ~25 ms, which small requests waited out); None when the body does not split
        cleanly, and ``decode`` parses it whole.

        It can only ever agree with the whole parse. Each piece must be a complete JSON
        list of records: a cut inside a string leaves an unterminated string, and the
        piece fails to parse. A body whose framing is not ``{"records": [...]}`` in plain
        JSON (escapes in the key, another key) does not split either."""
        head, tail = _HEAD.match(raw), _TAIL.search(raw, max(0, len(raw) - 64))
        if head is None or tail is None or head.end() >= tail.start():
            return None
        blocks, rows, start, end = [], 0, head.end(), tail.start()
        while start < end:
            cut = (
                _BETWEEN.search(raw, start + PIECE_BYTES, end)
                if end - start > PIECE_BYTES
                else None
            )
            stop = cut.start() + 1 if cut else end
            try:
                records = orjson.loads(b"[" + raw[start:stop] + b"]")
            except orjson.JSONDecodeError:
                return None
            block = self._block(records)
            if block is None:
                return None
            blocks.append(block)
            rows += len(block)
            if rows > self.max_records:
                return None
            start = cut.end() - 1 if cut else end
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

    def _block(self, records: list) -> np.ndarray | None:
        """``records`` as an ``n x k`` float array, if every one is a dict of exactly the
        columns, each a finite number and not a boolean; else None."""
        k = len(self.names)
        if not records or set(map(type, records)) != {dict}:
            return None
        if set(map(len, records)) != {k}:  # with every name present (below): no other key
            return None
        assert self._values is not None  # usable: there are columns
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
        return values


def _has_bool(values: np.ndarray, records: list[dict[str, Any]], names: list[str]) -> bool:
    """Whether a JSON ``true`` or ``false`` was taken as 1.0 or 0.0 (Python's bool is an
    int): only the values equal to 0 or 1 are looked at, a few in real data."""
    rows, cols = np.nonzero((values == 0.0) | (values == 1.0))
    return any(type(records[i][names[j]]) is bool for i, j in zip(rows.tolist(), cols.tolist()))
