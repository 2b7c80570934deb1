"""Columns of a frame as the compiled checks see them, and the registry they join.

Split from ``compiled.py``: ``compilers.py`` registers one check per expectation type
in ``CHECKS``; ``compiled.py`` compiles a suite with it and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from nb2prod.checks.suite import SuiteError

MAX_VALUES = 20  # offending values kept per result; the row list is never capped
_NO_ROWS = np.empty(0, dtype=np.intp)
_F64 = np.dtype(np.float64)
_IGNORED = frozenset({"result_format", "catch_exceptions", "include_config", "batch_id"})
_BATCH_ONLY = ("row_condition", "condition_parser")  # GE filters rows first: batch only
_NATIVE = {
    "none": (type(None),),
    "bool": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (float,),
    "bytes": (bytes,),
    "complex": (complex,),
    "str": (str,),
    "string_types": (str,),
    "list": (list,),
    "dict": (dict,),
}


class _GERaises(Exception):
    """GE's metric raises on this data, so the expectation fails; ``rows`` are to blame."""

    def __init__(self, rows: np.ndarray):
        super().__init__()
        self.rows = rows


Evaluate = Callable[["_Frame"], "tuple[bool, np.ndarray]"]


@dataclass(frozen=True)
class _Compiler:
    build: Callable[[dict], "tuple[Evaluate, str]"]  # kwargs -> (evaluate, expected text)
    kwargs: frozenset[str]
    required: tuple[str, ...]


class CheckCompilers:
    """The registry of check compilers, one per GE expectation type (snake_case)."""

    def __init__(self) -> None:
        self._compilers: dict[str, _Compiler] = {}

    def register(
        self,
        type_: str,
        *,
        required: tuple[str, ...] = ("column",),
        optional: tuple[str, ...] = ("mostly",),
    ) -> Callable:
        """Decorator: ``build(kwargs) -> (evaluate, expected)`` compiles ``type_``."""

        def attach(build: Callable) -> Callable:
            if type_ in self._compilers:
                raise ValueError(f"a check compiler for {type_!r} is already registered")
            self._compilers[type_] = _Compiler(build, frozenset(required + optional), required)
            return build

        return attach

    def get(self, type_: str) -> _Compiler:
        """The compiler for ``type_``; the error lists every type that compiles."""
        try:
            return self._compilers[type_]
        except KeyError:
            raise SuiteError(
                f"no compiled check for expectation type {type_!r}",
                fix=f"use one of: {', '.join(self.names)}",
            ) from None

    @property
    def names(self) -> list[str]:
        """Every expectation type the compiled validator runs, sorted."""
        return sorted(self._compilers)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._compilers


class _Column:
    """One column of the frame being validated: its array, fetched once, nulls on demand."""

    __slots__ = ("dtype", "values", "_series", "_null")

    def __init__(self, dtype: Any, values: np.ndarray, series: Callable[[], pd.Series]):
        self.dtype, self.values, self._series = dtype, values, series
        self._null: np.ndarray | None | Literal[False] = False  # False: not computed yet

    def series(self) -> pd.Series:
        """The column as pandas has it, for the checks GE delegates to pandas."""
        if callable(self._series):
            self._series = self._series()
        return self._series

    @property
    def null(self) -> np.ndarray | None:
        """Null mask in pandas' sense, or None when the dtype cannot hold nulls."""
        if self._null is False:
            kind = self.values.dtype.kind
            self._null = (
                np.isnan(self.values)
                if kind in "fc"
                else None
                if kind in "iub"
                else np.isnat(self.values)
                if kind in "mM"
                else pd.isna(self.values)
            )
        return self._null

    def null_count(self) -> int:
        """How many rows are null."""
        null = self.null
        return 0 if null is None else int(np.count_nonzero(null))

    def nonnull(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(row positions or None meaning all, values) of the non-null rows."""
        null = self.null
        if null is None or not null.any():
            return None, self.values
        keep = np.flatnonzero(~null)
        return keep, self.values[keep]

    @property
    def plain(self) -> bool:
        """Whether ``values`` holds the column's own scalars: true for numpy dtypes and
        pandas' str, false for dates and extension dtypes (Int64 with NA gives floats)."""
        return self.values.dtype.kind not in "mM" and (
            isinstance(self.dtype, np.dtype) or isinstance(self.dtype, pd.StringDtype)
        )

    def boxed(self) -> list:
        """Values as ``Series.map`` hands them to GE's Python predicates."""
        return self.values.tolist() if self.plain else self.series().tolist()


def _dtypes_of(df: pd.DataFrame) -> list:
    """``df.dtypes.tolist()`` without building a Series: 2 us instead of ~60 per request."""
    get = getattr(getattr(df, "_mgr", None), "get_dtypes", None)  # pandas internal
    return get().tolist() if get is not None else df.dtypes.tolist()


class _Frame:
    """The DataFrame under validation: columns by name, each array fetched once."""

    __slots__ = (
        "df",
        "n",
        "labels",
        "positions",
        "_dtypes",
        "_block",
        "_in_block",
        "_stats",
        "_columns",
    )

    def __init__(self, df: pd.DataFrame, labels: list, positions: dict):
        self.df, self.n, self.labels, self.positions = df, len(df), labels, positions
        self._dtypes: list | None = None
        self._block: np.ndarray | None = None
        self._in_block: dict[int, int] = {}
        self._stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._columns: dict[int, _Column] = {}

    def dtype(self, j: int) -> Any:
        """The dtype of column ``j``; the first call reads them all."""
        if self._dtypes is None:
            dtypes = self._dtypes = _dtypes_of(self.df)
            floats = [j for j, d in enumerate(dtypes) if d == _F64]
            # pandas hands out a column at ~10 us, a float block in one call: take the
            # block when there are enough floats (all of them: the common request).
            if floats and len(floats) == len(dtypes):
                self._block = self.df.to_numpy()
            elif len(floats) >= 8:
                self._block = self.df.take(floats, axis=1).to_numpy()
            if self._block is not None:
                self._in_block = {j: k for k, j in enumerate(floats)}
        return self._dtypes[j]

    def dtypes(self) -> list:
        """Every column's dtype, in order."""
        if self._dtypes is None and self.labels:
            self.dtype(0)
        return self._dtypes or []

    def block_index(self, j: int) -> int | None:
        """Where float column ``j`` sits in the float block, or None."""
        self.dtype(j)
        return self._in_block.get(j)

    def extremes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(any null, min, max) per column of the float block (a frame with rows).

        Three numpy calls over the float block answer most checks on it at once."""
        if self._stats is None:
            block = self._block
            assert block is not None  # only columns block_index places in it are asked
            # .any(axis=0) as a ufunc reduce, like fmin/fmax: numpy's stubs type .any() as
            # maybe a scalar, which null[k] could not index
            self._stats = (
                np.logical_or.reduce(np.isnan(block), axis=0),
                np.fmin.reduce(block, axis=0),
                np.fmax.reduce(block, axis=0),
            )
        return self._stats

    def stats(self, j: int) -> tuple[bool, float, float] | None:
        """(any null, min, max) of float column ``j`` if the frame has rows, else None."""
        k = self.block_index(j)
        if k is None or not self.n:
            return None
        null, low, high = self.extremes()
        return bool(null[k]), float(low[k]), float(high[k])

    def column(self, j: int) -> _Column:
        """Column ``j`` (a position from ``positions``)."""
        col = self._columns.get(j)
        if col is None:
            dtype, df, name = self.dtype(j), self.df, self.labels[j]
            unique = len(self.positions) == len(self.labels)
            series = (lambda: df[name]) if unique else (lambda: df.iloc[:, j])  # iloc: slow
            k = self._in_block.get(j)
            if k is not None:
                assert self._block is not None  # _in_block is filled only with a block
                col = _Column(dtype, self._block[:, k], series)
            else:
                s = series()
                col = _Column(dtype, s.to_numpy(), s)
            self._columns[j] = col
        return col
