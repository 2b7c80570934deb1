"""One compiler per supported expectation type, registered in ``CHECKS``.

Each turns an expectation's kwargs into a closure over a ``_Frame`` with its arguments
resolved once, plus the human text of what it expects. GE 1.24's semantics are
described in ``compiled.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from nb2prod.checks.frame import (
    _F64,
    _NATIVE,
    _NO_ROWS,
    CheckCompilers,
    Evaluate,
    _Column,
    _Frame,
    _GERaises,
)


def _column_map(
    kw: dict,
    unexpected: Callable[[_Column], np.ndarray],
    over_all_rows: bool = False,
    quick: Callable | None = None,
) -> Evaluate:
    """GE's column-map verdict around ``unexpected(col) -> rows`` (``mostly`` applied).

    ``quick(any_null, low, high)``, when given, may vouch for a pass from the column's
    ``stats`` without looking at its rows."""
    name, mostly = kw["column"], kw["mostly"]

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        j = frame.positions.get(name)
        if j is None:  # GE: "column does not exist" raised inside the metric
            return False, _NO_ROWS
        if quick is not None:
            stats = frame.stats(j)
            if stats is not None and quick(*stats):
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


def _fast(evaluate: Evaluate, kind: str, *args: Any) -> Evaluate:
    """Tag ``evaluate`` for ``allpass.AllPass``: ``"layout"`` (the verdict depends on the
    column labels only), ``"type", by_value`` (on the dtype, unless an object column is
    checked value by value), ``"not_null"`` or ``"between", lo, hi, strict_lo, strict_hi``
    (decided from a float column's null flag and extremes when they pass)."""
    # a tag on the function object, read with getattr; a Callable declares no attributes
    evaluate.fast = (kind, *args)  # type: ignore[attr-defined]
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
    parts = (
        [f"{'greater than' if strict_lo else 'at least'} {_num(lo)}"] if lo is not None else []
    ) + ([f"{'less than' if strict_hi else 'at most'} {_num(hi)}"] if hi is not None else [])
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

        return _fast(at_position, "layout"), f"column {name!r} at position {at}"
    return (
        _fast(lambda frame: (name in frame.positions, _NO_ROWS), "layout"),
        f"column {name!r} present",
    )


@CHECKS.register(
    "expect_table_columns_to_match_set", required=(), optional=("column_set", "exact_match")
)
def _match_set(kw: dict) -> tuple[Evaluate, str]:
    wanted = frozenset(kw.get("column_set") or ())
    exact = bool(kw.get("exact_match", True))  # None counts as False, as in GE

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        have = set(frame.positions)
        return (have == wanted if exact else wanted <= have), _NO_ROWS

    shown = "{" + ", ".join(repr(c) for c in sorted(wanted, key=str)) + "}"
    return _fast(evaluate, "layout"), f"columns {shown}" if exact else f"columns including {shown}"


@CHECKS.register("expect_column_values_to_not_be_null")
def _not_null(kw: dict) -> tuple[Evaluate, str]:
    def unexpected(col: _Column) -> np.ndarray:
        return _NO_ROWS if col.null is None else _masked(None, col.null)

    return (
        _fast(
            _column_map(kw, unexpected, True, quick=lambda null, low, high: not null), "not_null"
        ),
        "not null",
    )


@CHECKS.register("expect_column_values_to_be_null")
def _null(kw: dict) -> tuple[Evaluate, str]:
    def unexpected(col: _Column) -> np.ndarray:
        keep, _ = col.nonnull()
        return np.arange(len(col.values), dtype=np.intp) if keep is None else keep

    return _column_map(kw, unexpected, over_all_rows=True), "null"


@CHECKS.register(
    "expect_column_values_to_be_between",
    optional=("mostly", "min_value", "max_value", "strict_min", "strict_max"),
)
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
            assert bad is not None  # a bound is set: both None raised above
            return _masked(None, bad)
        # GE's map path; for date columns it compares in bulk, but a bound of the wrong
        # kind raises there as it does value by value.
        return _each(col, inside)

    def quick(null: bool, low: float, high: float) -> bool:  # NaN extremes vouch for nothing
        return (lo is None or (low > lo if strict_lo else low >= lo)) and (
            hi is None or (high < hi if strict_hi else high <= hi)
        )

    if numeric and not nan_bound:
        return (
            _fast(
                _column_map(kw, unexpected, quick=quick), "between", lo, hi, strict_lo, strict_hi
            ),
            _range(lo, hi, strict_lo, strict_hi),
        )
    return _column_map(kw, unexpected), _range(lo, hi, strict_lo, strict_hi)


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
        floats = (
            np.array(values, dtype=_F64)
            if real and all(type(v) is float or abs(v) <= 2**53 for v in values)
            else None
        )
        ints = (
            np.array(values, dtype=np.int64)
            if all(type(v) is int and -(2**63) <= v < 2**63 for v in values)
            else None
        )

        def unexpected(col: _Column) -> np.ndarray:
            keep, vals = col.nonnull()
            kind, found = vals.dtype.kind, None
            if kind == "f" and floats is not None and col.dtype == vals.dtype:
                found = np.isin(vals, floats)
            elif vals.dtype == np.int64 and col.dtype == vals.dtype and ints is not None:
                found = np.isin(vals, ints)
            elif (
                lookup is not None
                and len(vals) <= 256
                and (col.dtype == object or isinstance(col.dtype, pd.StringDtype))
            ):
                try:  # a few values: a set lookup beats pandas' (vectorized) isin
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
                        raise _GERaises(
                            np.arange(len(vals), dtype=np.intp) if keep is None else keep
                        ) from None
                found = col.series().isin(wanted).to_numpy(dtype=bool)
                found = found if keep is None else found[keep]
            return _masked(keep, found if negate else ~found)

        shown = ", ".join(repr(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        return _column_map(kw, unexpected), ("not in {" if negate else "in {") + shown + "}"

    return build


CHECKS.register("expect_column_values_to_be_in_set", required=("column", "value_set"))(
    _membership(negate=False)
)
CHECKS.register("expect_column_values_to_not_be_in_set", required=("column", "value_set"))(
    _membership(negate=True)
)


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
    by_value = (
        None
        if per_value is None
        else _column_map(kw, lambda col: _each(col, lambda v: isinstance(v, per_value)))
    )

    def evaluate(frame: _Frame) -> tuple[bool, np.ndarray]:
        j = frame.positions.get(name)
        if j is None:
            return False, _NO_ROWS
        dtype = frame.dtype(j)
        if by_value is not None and getattr(dtype.type, "__name__", "") == "object_":
            return by_value(frame)
        try:
            return bool(per_dtype(dtype)), _NO_ROWS
        except Exception:  # a dtype that will not compare: GE's validation raises
            return False, _NO_ROWS

    return _fast(evaluate, "type", per_value is not None)


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
        raise ValueError(f"no type name in {names!r} is a numpy dtype, pandas class or Python type")
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
    _regex(negate=False)
)
CHECKS.register("expect_column_values_to_not_match_regex", required=("column", "regex"))(
    _regex(negate=True)
)


@CHECKS.register(
    "expect_column_value_lengths_to_be_between",
    optional=("mostly", "min_value", "max_value", "strict_min", "strict_max"),
)
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
