"""The request-path validator: an expectation suite compiled to vectorized numpy code.

``CompiledSuite(suite).validate(df)`` gives the verdicts Great Expectations 1.24 gives on
pandas (the parity tests hold it to that) without importing GE. Compiling turns each
expectation into a closure with its arguments resolved once; validating fetches each
column's array once and runs the closures. GE's rules, replicated here:

- Column-map expectations ignore nulls (None, NaN, NaT, pd.NA; not empty strings, not
  inf): ``mostly`` is the share of *non-null* values that pass, and a column with no
  non-null value passes. ``..._to_be_null`` / ``..._to_not_be_null`` count over all rows.
- Where GE's metric raises (a missing column, a string compared with a number in
  ``..._to_be_between``, text that is not UTF-8), GE reports failure with an
  exception; so do we, naming the rows whose values could not be compared (GE names
  none).
- A configuration GE rejects, or one it could never pass on any data (min_value above
  max_value, a regex that does not compile, a type name nobody knows), is refused at
  compile time with ``SuiteError``, so the mistake surfaces at build, not per request.
- Expectations this module cannot run (aggregates such as
  ``expect_column_mean_to_be_between``, ``row_condition``, suite parameters) are not
  dropped: ``unsupported`` lists them and every result names them in ``skipped``.

Checks are registered per type in ``CHECKS`` (papermill's engine registry, in small).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .results import SEVERITIES, ExpectationResult, ValidationResult
from .suite import SuiteError  # one error for a wrong suite, however it is found

MAX_VALUES = 20  # offending values kept per result; the row list is never capped
_NO_ROWS = np.empty(0, dtype=np.intp)
_F64 = np.dtype(np.float64)
_IGNORED = frozenset({"result_format", "catch_exceptions", "include_config", "batch_id"})
_BATCH_ONLY = ("row_condition", "condition_parser")  # GE filters rows first: batch only
_NATIVE = {"none": (type(None),), "bool": (bool,), "int": (int,), "long": (int,),
           "float": (float,), "bytes": (bytes,), "complex": (complex,), "str": (str,),
           "string_types": (str,), "list": (list,), "dict": (dict,)}


class _GERaises(Exception):
    """GE's metric raises on this data, so the expectation fails; ``rows`` are to blame."""

    def __init__(self, rows: np.ndarray):
        super().__init__()
        self.rows = rows


Evaluate = Callable[["_Frame"], "tuple[bool, np.ndarray]"]


@dataclass(frozen=True)
class _Compiler:
    build: Callable[[dict], "tuple[Evaluate, str]"]   # kwargs -> (evaluate, expected text)
    kwargs: frozenset[str]
    required: tuple[str, ...]


class CheckCompilers:
    """The registry of check compilers, one per GE expectation type (snake_case)."""

    def __init__(self) -> None:
        self._compilers: dict[str, _Compiler] = {}

    def register(self, type_: str, *, required: tuple[str, ...] = ("column",),
                 optional: tuple[str, ...] = ("mostly",)) -> Callable:
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
            raise SuiteError(f"no compiled check for expectation type {type_!r}",
                             fix=f"use one of: {', '.join(self.names)}") from None

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
        self.dtype, self.values, self._series, self._null = dtype, values, series, False

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
            self._null = (np.isnan(self.values) if kind in "fc" else None if kind in "iub"
                          else np.isnat(self.values) if kind in "mM" else pd.isna(self.values))
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
            isinstance(self.dtype, np.dtype) or isinstance(self.dtype, pd.StringDtype))

    def boxed(self) -> list:
        """Values as ``Series.map`` hands them to GE's Python predicates."""
        return self.values.tolist() if self.plain else self.series().tolist()


class _Frame:
    """The DataFrame under validation: columns by name, each array fetched once."""

    __slots__ = ("df", "n", "labels", "positions", "_dtypes", "_block", "_stats", "_columns")

    def __init__(self, df: pd.DataFrame, labels: list, positions: dict):
        self.df, self.n, self.labels, self.positions = df, len(df), labels, positions
        self._dtypes: list | None = None
        self._block: np.ndarray | None = None
        self._stats: Any = False
        self._columns: dict[int, _Column] = {}

    def dtype(self, j: int) -> Any:
        """The dtype of column ``j``; the first call reads them all."""
        if self._dtypes is None:
            self._dtypes = self.df.dtypes.tolist()
            # An all-float frame (the common request) converts in one numpy call.
            if self._dtypes and all(d == _F64 for d in self._dtypes):
                self._block = self.df.to_numpy()
        return self._dtypes[j]

    def stats(self) -> tuple[list, list, list] | None:
        """(any null, min, max) per column of an all-float frame with rows, else None.

        Three numpy calls answer most checks on such a frame at once."""
        if self._stats is False:
            self.dtype(0)
            block = self._block
            self._stats = None if block is None or not len(block) else (
                np.isnan(block).any(axis=0).tolist(), np.fmin.reduce(block, axis=0).tolist(),
                np.fmax.reduce(block, axis=0).tolist())
        return self._stats

    def column(self, j: int) -> _Column:
        """Column ``j`` (a position from ``positions``)."""
        col = self._columns.get(j)
        if col is None:
            dtype, df, name = self.dtype(j), self.df, self.labels[j]
            unique = len(self.positions) == len(self.labels)
            series = (lambda: df[name]) if unique else (lambda: df.iloc[:, j])  # iloc: slow
            if self._block is not None:
                col = _Column(dtype, self._block[:, j], series)
            else:
                s = series()
                col = _Column(dtype, s.to_numpy(), s)
            self._columns[j] = col
        return col


def _column_map(kw: dict, unexpected: Callable[[_Column], np.ndarray],
                over_all_rows: bool = False, quick: Callable | None = None) -> Evaluate:
    """GE's column-map verdict around ``unexpected(col) -> rows`` (``mostly`` applied).

    ``quick(stats, j)``, when given, may vouch for a pass from the frame's ``stats()``."""
    name, mostly = kw["column"], kw["mostly"]

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        j = frame.positions.get(name)
        if j is None:  # GE: "column does not exist" raised inside the metric
            return False, _NO_ROWS
        if quick is not None:
            stats = frame.stats()
            if stats is not None and quick(stats, j):
                return True, _NO_ROWS
        col = frame.column(j)
        try:
            rows = unexpected(col)
        except _GERaises as raised:
            return False, raised.rows
        if not len(rows):  # also GE's vacuous truths: no rows, no non-null rows
            return True, rows
        considered = float(frame.n if over_all_rows else frame.n - col.null_count())
        return (considered - len(rows)) / considered >= mostly, rows
    return evaluate


def _masked(keep: np.ndarray | None, bad: np.ndarray) -> np.ndarray:
    """Row positions of the True entries of ``bad``, a mask over the rows ``keep`` names."""
    if not bad.any():
        return _NO_ROWS
    rows = np.flatnonzero(bad)
    return rows if keep is None else keep[rows]


def _each(col: _Column, predicate: Callable[[Any], bool]) -> np.ndarray:
    """Rows whose non-null value fails ``predicate``, GE's ``Series.map`` path.

    GE lets an exception from the predicate fail the whole expectation; we raise
    ``_GERaises`` naming every row whose value raised."""
    null, values = col.null, col.boxed()
    rows, broken = [], []
    for i, v in enumerate(values):
        if null is None or not null[i]:
            try:
                if not predicate(v):
                    rows.append(i)
            except Exception:  # whatever GE's map would have raised
                broken.append(i)
    if broken:
        raise _GERaises(np.array(broken, dtype=np.intp))
    return np.array(rows, dtype=np.intp) if rows else _NO_ROWS


def _strings(col: _Column) -> tuple[np.ndarray | None, list[str]]:
    """Non-null values as ``Series.astype(str)`` spells them (bytes decoded as UTF-8)."""
    if not col.plain:  # pandas formats dates column-wide, Int64 without ".0": let it
        keep, _ = col.nonnull()
        text = col.series().astype(str).to_numpy()
        return keep, (text if keep is None else text[keep]).tolist()
    keep, values = col.nonnull()
    try:
        return keep, [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:  # pandas raises: GE fails the expectation
        raise _GERaises(_each(col, lambda v: not isinstance(v, bytes) or _utf8(v))) from None


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _range(lo: Any, hi: Any, strict_lo: bool, strict_hi: bool) -> str:
    """Human text for a range: "between 0 and 60", "greater than 0 and at most 60"."""
    if lo is not None and hi is not None and not (strict_lo or strict_hi):
        return f"between {_num(lo)} and {_num(hi)}"
    parts = ([f"{'greater than' if strict_lo else 'at least'} {_num(lo)}"] if lo is not None
             else []) + ([f"{'less than' if strict_hi else 'at most'} {_num(hi)}"]
                         if hi is not None else [])
    return " and ".join(parts)


def _bound(value: Any) -> Any:
    """A between bound as GE's pydantic model coerces it: a float, a date, a datetime."""
    import datetime as dt
    if value is None or isinstance(value, (dt.date, dt.datetime)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    if isinstance(value, str):
        try:
            if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value):
                return dt.date(*map(int, value.split("-")))
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"bound {value!r} is neither a number nor an ISO date/datetime")


CHECKS = CheckCompilers()


@CHECKS.register("expect_column_to_exist", optional=("column_index",))
def _exist(kw: dict) -> tuple[Evaluate, str]:
    name, at = kw["column"], kw.get("column_index")
    if at:  # GE tests `if column_index:`, so position 0 only checks presence
        at = int(at)

        def at_position(frame: _Frame) -> tuple[bool, np.ndarray]:
            try:
                return bool(frame.labels[at] == name), _NO_ROWS
            except IndexError:
                return False, _NO_ROWS
        return at_position, f"column {name!r} at position {at}"
    return (lambda frame: (name in frame.positions, _NO_ROWS)), f"column {name!r} present"


@CHECKS.register("expect_table_columns_to_match_set", required=(),
                 optional=("column_set", "exact_match"))
def _match_set(kw: dict) -> tuple[Evaluate, str]:
    wanted = frozenset(kw.get("column_set") or ())
    exact = bool(kw.get("exact_match", True))  # None counts as False, as in GE

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        have = set(frame.positions)
        return (have == wanted if exact else wanted <= have), _NO_ROWS
    shown = "{" + ", ".join(repr(c) for c in sorted(wanted, key=str)) + "}"
    return evaluate, f"columns {shown}" if exact else f"columns including {shown}"


@CHECKS.register("expect_column_values_to_not_be_null")
def _not_null(kw: dict) -> tuple[Evaluate, str]:
    def unexpected(col: _Column) -> np.ndarray:
        return _NO_ROWS if col.null is None else _masked(None, col.null)
    return _column_map(kw, unexpected, True, quick=lambda s, j: not s[0][j]), "not null"


@CHECKS.register("expect_column_values_to_be_null")
def _null(kw: dict) -> tuple[Evaluate, str]:
    def unexpected(col: _Column) -> np.ndarray:
        keep, _ = col.nonnull()
        return np.arange(len(col.values), dtype=np.intp) if keep is None else keep
    return _column_map(kw, unexpected, over_all_rows=True), "null"


@CHECKS.register("expect_column_values_to_be_between",
                 optional=("mostly", "min_value", "max_value", "strict_min", "strict_max"))
def _between(kw: dict) -> tuple[Evaluate, str]:
    lo, hi = _bound(kw.get("min_value")), _bound(kw.get("max_value"))
    strict_lo, strict_hi = bool(kw.get("strict_min")), bool(kw.get("strict_max"))
    if lo is None and hi is None:
        raise ValueError("min_value and max_value cannot both be None")
    if lo is not None and hi is not None and lo > hi:  # GE raises this on every batch
        raise ValueError(f"min_value {lo} is greater than max_value {hi}")
    numeric = all(b is None or isinstance(b, float) for b in (lo, hi))
    nan_bound = numeric and any(b is not None and math.isnan(b) for b in (lo, hi))

    def inside(v: Any) -> bool:  # GE's is_between, short-circuits included
        if isinstance(v, str):
            raise TypeError("Column values, min_value, and max_value must be of the same type")
        if lo is not None and not (v > lo if strict_lo else v >= lo):
            return False
        return hi is None or (v < hi if strict_hi else v <= hi)

    def unexpected(col: _Column) -> np.ndarray:
        v, kind = col.values, col.values.dtype.kind
        exact = kind == "f" or (kind in "iub" and v.dtype.itemsize <= 4) or v.dtype == np.int64
        if numeric and exact and col.dtype == v.dtype:  # GE compares int64 as float64 too
            x = v if v.dtype == _F64 else v.astype(_F64)
            if nan_bound:
                return _masked(None, ~np.isnan(x))
            bad = None  # NaN values compare False both ways: never flagged
            if lo is not None:
                bad = x <= lo if strict_lo else x < lo
            if hi is not None:
                over = x >= hi if strict_hi else x > hi
                bad = over if bad is None else bad | over
            return _masked(None, bad)
        # GE's map path; for date columns it compares in bulk, but a bound of the wrong
        # kind raises there as it does value by value.
        return _each(col, inside)

    def quick(stats: tuple, j: int) -> bool:  # NaN extremes (all-null column) vouch for nothing
        low, high = stats[1][j], stats[2][j]
        return (lo is None or (low > lo if strict_lo else low >= lo)) and (
            hi is None or (high < hi if strict_hi else high <= hi))
    return (_column_map(kw, unexpected, quick=quick if numeric and not nan_bound else None),
            _range(lo, hi, strict_lo, strict_hi))


def _membership(negate: bool) -> Callable[[dict], tuple[Evaluate, str]]:
    def build(kw: dict) -> tuple[Evaluate, str]:
        values = kw["value_set"]
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set)):
            raise ValueError(f"value_set must be a list, not {type(values).__name__}")
        values = list(values)
        try:
            lookup: frozenset | None = frozenset(values)
        except TypeError:
            lookup = None
        # numpy's isin agrees with pandas' only where both compare in one exact dtype.
        real = all(type(v) in (int, float) for v in values)
        floats = np.array(values, dtype=_F64) if real and all(
            type(v) is float or abs(v) <= 2 ** 53 for v in values) else None
        ints = np.array(values, dtype=np.int64) if all(
            type(v) is int and -2 ** 63 <= v < 2 ** 63 for v in values) else None

        def unexpected(col: _Column) -> np.ndarray:
            keep, vals = col.nonnull()
            kind, found = vals.dtype.kind, None
            if kind == "f" and floats is not None and col.dtype == vals.dtype:
                found = np.isin(vals, floats)
            elif vals.dtype == np.int64 and col.dtype == vals.dtype and ints is not None:
                found = np.isin(vals, ints)
            elif lookup is not None and (col.dtype == object
                                         or isinstance(col.dtype, pd.StringDtype)):
                try:
                    found = np.fromiter((v in lookup for v in vals), dtype=bool, count=len(vals))
                except TypeError:  # an unhashable value: pandas copes, let it
                    found = None
            if found is None:
                wanted = values
                if negate and pd.api.types.is_datetime64_any_dtype(col.dtype):
                    from dateutil.parser import parse  # GE parses text for dates so
                    try:
                        wanted = [parse(v) if isinstance(v, str) else v for v in values]
                    except (ValueError, OverflowError):
                        raise _GERaises(np.flatnonzero(~col.null)) from None
                found = col.series().isin(wanted).to_numpy(dtype=bool)
                found = found if keep is None else found[keep]
            return _masked(keep, found if negate else ~found)
        shown = ", ".join(repr(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        return _column_map(kw, unexpected), ("not in {" if negate else "in {") + shown + "}"
    return build


CHECKS.register("expect_column_values_to_be_in_set", required=("column", "value_set"))(
    _membership(negate=False))
CHECKS.register("expect_column_values_to_not_be_in_set", required=("column", "value_set"))(
    _membership(negate=True))


def _types(name: Any, *, instances: bool) -> list:
    """GE's resolution of a type name: numpy dtype, pandas class, Python builtin.

    ``instances`` adds what ``..._in_type_list`` also compares a column dtype against:
    the numpy dtype itself and an instance of a pandas extension dtype class."""
    if not isinstance(name, str):
        raise ValueError(f"type name {name!r} is not a string")
    found: list = []
    try:
        found += [np.dtype(name).type] + ([np.dtype(name)] if instances else [])
    except TypeError:
        for owner in (pd, pd.core.dtypes.dtypes):
            candidate = getattr(owner, name, None)
            if isinstance(candidate, type):
                found.append(candidate)
                if instances and owner is pd:
                    try:
                        if isinstance(candidate(), pd.api.extensions.ExtensionDtype):
                            found.append(candidate())
                    except TypeError:
                        pass
    return found + list(_NATIVE.get(name.lower(), ()))


def _typed(kw: dict, per_value: tuple | None, per_dtype: Callable[[Any], bool]) -> Evaluate:
    """Type checks as GE runs them on pandas: each value of an object column must be an
    instance of ``per_value`` (unless None), any other column's dtype must pass
    ``per_dtype``, a verdict without rows."""
    name = kw["column"]
    by_value = _column_map(kw, lambda col: _each(col, lambda v: isinstance(v, per_value)))

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        j = frame.positions.get(name)
        if j is None:
            return False, _NO_ROWS
        dtype = frame.dtype(j)
        if per_value is not None and getattr(dtype.type, "__name__", "") == "object_":
            return by_value(frame)
        try:
            return bool(per_dtype(dtype)), _NO_ROWS
        except Exception:  # a dtype that will not compare: GE's validation raises
            return False, _NO_ROWS
    return evaluate


@CHECKS.register("expect_column_values_to_be_of_type", required=("column", "type_"))
def _of_type(kw: dict) -> tuple[Evaluate, str]:
    name = kw["type_"]
    found = _types(name, instances=False)
    if not found:
        raise ValueError(f"type name {name!r} is no numpy dtype, pandas class or Python type")
    per_value = None if name in ("object", "object_", "O") else tuple(found)
    return _typed(kw, per_value, lambda dtype: dtype.type in found), f"of type {name}"


@CHECKS.register("expect_column_values_to_be_in_type_list", optional=("mostly", "type_list"))
def _in_type_list(kw: dict) -> tuple[Evaluate, str]:
    names = kw.get("type_list")
    if names is None:
        return (lambda frame: (True, _NO_ROWS)), "of any type"
    per_value = tuple(t for n in names for t in _types(n, instances=False))
    per_dtype = [t for n in names for t in _types(n, instances=True)]
    if not per_value:
        raise ValueError(f"no type name in {names!r} is a numpy dtype, pandas class or "
                         "Python type")
    return _typed(kw, per_value, lambda dtype: dtype in per_dtype), f"of a type in {names}"


def _regex(negate: bool) -> Callable[[dict], tuple[Evaluate, str]]:
    def build(kw: dict) -> tuple[Evaluate, str]:
        source = kw.get("regex", "(?s).*")
        try:
            pattern = re.compile(source)
        except (re.error, TypeError) as e:
            raise ValueError(f"regex {source!r} does not compile: {e}") from None

        def unexpected(col: _Column) -> np.ndarray:
            keep, text = _strings(col)  # pandas' str.contains is re.search per value
            found = np.fromiter((pattern.search(t) is not None for t in text), bool, len(text))
            return _masked(keep, found if negate else ~found)
        return _column_map(kw, unexpected), f"{'not ' if negate else ''}matching {source!r}"
    return build


CHECKS.register("expect_column_values_to_match_regex", optional=("mostly", "regex"))(
    _regex(negate=False))
CHECKS.register("expect_column_values_to_not_match_regex", required=("column", "regex"))(
    _regex(negate=True))


@CHECKS.register("expect_column_value_lengths_to_be_between",
                 optional=("mostly", "min_value", "max_value", "strict_min", "strict_max"))
def _lengths(kw: dict) -> tuple[Evaluate, str]:
    # GE's model holds these as int: pydantic truncates 2.7 to 2.
    lo, hi = (None if kw.get(k) is None else int(kw[k]) for k in ("min_value", "max_value"))
    strict_lo, strict_hi = bool(kw.get("strict_min")), bool(kw.get("strict_max"))
    if lo is None and hi is None:
        raise ValueError("min_value and max_value cannot both be None")

    def unexpected(col: _Column) -> np.ndarray:
        keep, text = _strings(col)
        n = np.fromiter((len(t) for t in text), dtype=np.int64, count=len(text))
        bad = np.zeros(len(n), dtype=bool)
        if lo is not None:
            bad |= n <= lo if strict_lo else n < lo
        if hi is not None:
            bad |= n >= hi if strict_hi else n > hi
        return _masked(keep, bad)
    return _column_map(kw, unexpected), "length " + _range(lo, hi, strict_lo, strict_hi)


@CHECKS.register("expect_column_values_to_be_unique")
def _unique(kw: dict) -> tuple[Evaluate, str]:
    def unexpected(col: _Column) -> np.ndarray:
        if len(col.values) - col.null_count() < 2:
            return _NO_ROWS
        duplicated = col.series().duplicated(keep=False).to_numpy(dtype=bool)
        return _masked(None, duplicated if col.null is None else duplicated & ~col.null)
    return _column_map(kw, unexpected), "unique"


class _Check:
    """One compiled expectation: where it sits in the suite, and how to run it."""

    __slots__ = ("index", "type", "column", "severity", "expected", "evaluate", "_passed")

    def __init__(self, index: int, type_: str, column: Any, severity: str, expected: str,
                 evaluate: Evaluate):
        self.index, self.type, self.column, self.severity = index, type_, column, severity
        self.expected, self.evaluate = expected, evaluate
        self._passed: ExpectationResult | None = None

    def run(self, frame: _Frame) -> ExpectationResult:
        """This expectation's result on ``frame``."""
        ok, rows = self.evaluate(frame)
        if ok and not len(rows):
            # A pass depends only on the row count: reuse it (results are immutable).
            passed = self._passed
            if passed is None or passed.element_count != frame.n:
                passed = self._passed = ExpectationResult(
                    self.index, self.type, self.column, self.severity, True,
                    expected=self.expected, element_count=frame.n)
            return passed
        values: tuple = ()
        j = frame.positions.get(self.column) if len(rows) and self.column is not None else None
        if j is not None:
            col = frame.column(j)
            shown = rows[:MAX_VALUES]
            values = tuple(col.values[shown].tolist() if col.plain
                           else col.series().iloc[shown].tolist())
        return ExpectationResult(self.index, self.type, self.column, self.severity, bool(ok),
                                 tuple(rows.tolist()), values, self.expected, frame.n)


def _mostly(value: Any) -> float:
    mostly = float(value)
    if not 0.0 <= mostly <= 1.0:
        raise ValueError(f"mostly must be between 0 and 1, not {value!r}")
    return mostly


def _compile(index: int, expectation: Any) -> _Check | str:
    """One expectation compiled, or the reason it can only run in batch validation."""
    if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str) \
            or not isinstance(expectation.get("kwargs", {}), dict):
        raise ValueError("an expectation needs a 'type' string and a 'kwargs' object")
    type_, kwargs = expectation["type"], expectation.get("kwargs", {})
    ours = ((expectation.get("meta") or {}).get("nb2prod") or {})
    severity = ours.get("severity", "reject")
    if severity not in SEVERITIES:
        raise ValueError(f"meta.nb2prod.severity {severity!r} is not one of {SEVERITIES}")
    if type_ not in CHECKS:
        return "no request-time implementation (aggregate or unknown type)"
    if kwargs.get("row_condition"):
        return "row_condition filters rows first"
    if any(isinstance(v, dict) for v in kwargs.values()):
        return "uses suite parameters"
    compiler = CHECKS.get(type_)
    kw = {k: v for k, v in kwargs.items() if k not in _IGNORED and k not in _BATCH_ONLY}
    unknown = sorted(set(kw) - compiler.kwargs)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; {type_} takes "
                         f"{sorted(compiler.kwargs)}")
    missing = [k for k in compiler.required if kw.get(k) is None]
    if missing:
        raise ValueError(f"missing argument(s) {missing}")
    if "column" in kw and not isinstance(kw["column"], str):
        raise ValueError(f"column must be a string, not {kw['column']!r}")
    if "mostly" in compiler.kwargs:
        kw["mostly"] = _mostly(kw.get("mostly", 1.0))
    evaluate, expected = compiler.build(kw)
    return _Check(index, type_, kw.get("column"), severity, expected, evaluate)


def expected_text(expectation: dict) -> str:
    """What one expectation expects, in words: the compiled check's text, else (for what
    cannot compile) its type and arguments, "column mean to be between (min_value=0)"."""
    try:
        compiled = _compile(0, expectation)
    except (ValueError, TypeError):
        compiled = None
    if isinstance(compiled, _Check):
        return compiled.expected
    args = ", ".join(f"{k}={v!r}" for k, v in expectation.get("kwargs", {}).items()
                     if k != "column")
    return expectation["type"].removeprefix("expect_").replace("_", " ") + f" ({args})"


class CompiledSuite:
    """An expectation suite (GE suite JSON as a dict) compiled for the request path.

    ``validate(df)`` returns a ``ValidationResult`` with one result per compiled
    expectation in suite order; ``unsupported`` lists ``(index, type)`` of those that
    only batch validation can run (``unsupported_reasons`` says why). Compiling collects
    every problem in the suite and raises one ``SuiteError``. Safe to share between
    threads: validation keeps no state but a cache of immutable results.
    """

    def __init__(self, suite: dict):
        name = suite.get("name", "suite") if isinstance(suite, dict) else "suite"
        expectations = suite.get("expectations") if isinstance(suite, dict) else None
        if not isinstance(expectations, list):
            raise SuiteError("an expectation suite needs an 'expectations' list",
                             where=f"suite {name!r}", fix="pass GE suite JSON as a dict")
        self.name = name
        self.unsupported: list[tuple[int, str]] = []
        self.unsupported_reasons: dict[int, str] = {}
        self._checks: list[_Check] = []
        problems = []
        for i, expectation in enumerate(expectations):
            try:
                compiled = _compile(i, expectation)
            except (ValueError, TypeError) as e:
                what = (expectation.get("type"), (expectation.get("kwargs") or {}).get("column")) \
                    if isinstance(expectation, dict) else (None, None)
                problems.append(f"expectation {i} ({what[0]}"
                                + (f", column {what[1]!r}" if what[1] else "") + f"): {e}")
                continue
            if isinstance(compiled, str):
                self.unsupported.append((i, expectation["type"]))
                self.unsupported_reasons[i] = compiled
            else:
                self._checks.append(compiled)
        if problems:
            raise SuiteError(f"{len(problems)} problem(s) in the expectation suite:\n- "
                             + "\n- ".join(problems), where=f"suite {name!r}",
                             fix="correct these expectations where the notebook declares them")
        self._skipped = tuple(t for _, t in self.unsupported)
        self._labels: tuple = (None, [], {})

    def validate(self, df: pd.DataFrame) -> ValidationResult:
        """Every compiled expectation's verdict on ``df``; rows are 0-based positions."""
        labels = self._labels
        if labels[0] is not df.columns:  # request frames share one column Index: map it once
            names = df.columns.tolist()
            labels = self._labels = (df.columns, names, {c: j for j, c in enumerate(names)})
        frame = _Frame(df, labels[1], labels[2])
        return ValidationResult(tuple(c.run(frame) for c in self._checks), self._skipped)
