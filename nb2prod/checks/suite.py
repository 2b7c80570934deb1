"""The input contract as data: an expectation suite drafted from a DataFrame, then edited.

``expect(X_train)`` drafts a suite with plain pandas (no Great Expectations import, so it
is fast in a notebook); ``Suite`` edits it and stores it as GE's own suite JSON, so plain
GE loads it unchanged. nb2prod's part of each expectation lives in
``meta["nb2prod"] = {"severity": ..., "drafted": ...}``:

- ``reject``   the row is refused (422),
- ``fallback`` the row is answered by the non-AI fallback,
- ``warn``     the row is answered by the model and a warning is returned.

Default severities: schema-level expectations (``SCHEMA_TYPES``) reject; drafted ranges,
value sets and lengths warn; an expectation added by hand rejects unless told otherwise.

What ``expect`` drafts, per column: it exists; its type (``type_`` is the name GE's
pandas backend resolves to the column dtype's scalar type: float64, int64, bool, str,
object, datetime64, CategoricalDtypeType, Timestamp); not null when no nulls were seen;
for numbers (not bools) a range widened by ``margin`` x (max - min) on each side, or by
``margin`` x max(|value|, 1) for a constant column, rounded outward to a readable step
(an infinite value seen leaves that side open); a value set for categoricals (their
declared categories), bools and strings or integers with at most ``max_categories``
distinct values; a length range (widened the same way, in whole characters) for other
string columns. A lower bound never crosses zero for a column never seen negative.
Datetimes get no range. The table's column set must match exactly.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from nb2prod.checks.report import class_name, suite_html, suite_text
from nb2prod.checks.results import SEVERITIES
from nb2prod.core.errors import Nb2prodError

SCHEMA_TYPES = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_not_be_null",
    }
)
_COLUMN_KEYS = ("column", "column_A", "column_B", "column_list", "column_set")


class SuiteError(Nb2prodError, ValueError):
    """A suite was built, edited or loaded wrongly; the message lists what exists."""


class SuiteUsageError(Nb2prodError, TypeError):
    """A suite function got a keyword argument it does not take."""


def _strict(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse unknown keyword arguments with the valid names instead of Python's bare TypeError."""
    params = inspect.signature(fn).parameters
    valid = [
        n
        for n, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
    ]

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            raise SuiteUsageError(
                f"{fn.__qualname__}() got unknown keyword argument(s) {', '.join(unknown)}; "
                f"valid: {', '.join(valid)}",
                fix=f"write {close[0]}=... instead" if close else "remove them",
            )
        return fn(*args, **kwargs)

    return checked


def snake_type(name: Any) -> str:
    """GE's snake_case type for ``ExpectColumnValuesToBeBetween``, its class, or a snake name."""
    name = name.__name__ if isinstance(name, type) else str(name)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _check_severity(severity: Any, where: str) -> str:
    if severity not in SEVERITIES:
        raise SuiteError(
            f"severity {severity!r} is not known; valid: {', '.join(SEVERITIES)}",
            where=where,
            fix=f"use one of {', '.join(map(repr, SEVERITIES))}",
        )
    return severity


def _native(value: Any) -> Any:
    """numpy scalars and tuples become JSON types, so a suite always serializes."""
    if isinstance(value, dict):
        return {str(k): _native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Index)):
        return [_native(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Expectation:
    """One expectation: GE's ``type`` and ``kwargs`` plus nb2prod's severity and origin."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    drafted: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # other meta, kept as given
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys (GE's id...)

    @property
    def column(self) -> str | None:
        """The column a single-column expectation checks; None for table-level ones."""
        return self.kwargs.get("column")

    def to_json(self) -> dict[str, Any]:
        """GE's expectation JSON with ``meta.nb2prod`` filled in."""
        ours = {**self.meta.get("nb2prod", {}), "severity": self.severity, "drafted": self.drafted}
        return {
            **json.loads(json.dumps(self.extra)),
            "type": self.type,
            "kwargs": json.loads(json.dumps(self.kwargs)),
            "meta": {**json.loads(json.dumps(self.meta)), "nb2prod": ours},
        }

    @classmethod
    def from_json(
        cls, data: Any, where: str, *, severity: str | None = None, drafted: bool | None = None
    ) -> "Expectation":
        """Parse one GE expectation dict; errors name ``where`` (e.g. ``expectations[3]``)."""
        example = '{"type": "expect_column_to_exist", "kwargs": {"column": "age"}}'
        if not isinstance(data, dict):
            raise SuiteError(
                f"an expectation must be a GE expectation or a dict, got "
                f"{type(data).__name__} {data!r:.60}",
                where=where,
                fix=f"write it as {example}",
            )
        for key, kind in (("type", str), ("kwargs", dict), ("meta", dict)):
            if key not in data and key != "meta":
                raise SuiteError(
                    f"the expectation has no {key!r}", where=where, fix=f"write it as {example}"
                )
            if key in data and not isinstance(data[key], kind):
                raise SuiteError(
                    f"{key!r} must be a {kind.__name__}, got {type(data[key]).__name__}",
                    where=where,
                    fix=f"write it as {example}",
                )
        type_, kwargs = snake_type(data["type"]), _native(data["kwargs"])
        if not type_.startswith("expect_"):
            raise SuiteError(
                f"{data['type']!r} is not an expectation type",
                where=where,
                fix="use a GE type such as 'expect_column_values_to_be_between'",
            )
        meta = _native(data.get("meta") or {})
        extra = _native({k: v for k, v in data.items() if k not in ("type", "kwargs", "meta")})
        try:
            json.dumps([kwargs, meta, extra])
        except (TypeError, ValueError) as exc:
            raise SuiteError(
                f"{type_}(...) cannot be stored as JSON: {exc}",
                where=where,
                fix="pass plain numbers, strings and lists",
            ) from exc
        ours = meta.get("nb2prod") or {}
        if not isinstance(ours, dict):
            raise SuiteError(
                "meta.nb2prod must be a dict",
                where=where,
                fix='write "meta": {"nb2prod": {"severity": "warn"}}',
            )
        chosen = severity or ours.get("severity") or "reject"
        return cls(
            type_,
            kwargs,
            _check_severity(chosen, where),
            bool(ours.get("drafted", False)) if drafted is None else drafted,
            meta,
            extra,
        )


class Suite:
    """An editable expectation suite; every editing method returns the suite, so calls chain."""

    def __init__(
        self, expectations: Any = (), *, name: str = "checks", meta: dict[str, Any] | None = None
    ):
        self.name = name
        self.meta = dict(meta or {})
        self._items: list[Expectation] = list(expectations)

    @_strict
    def add(self, expectation: Any, *, severity: str | None = None) -> "Suite":
        """Add a GE expectation object or a ``{"type", "kwargs"}`` dict; default severity reject.

        A hand-added expectation replaces drafted ones of the same type on the same
        column (the hand-written bound is the intended one) and an identical one (a
        re-run cell); otherwise it is appended.
        """
        if severity is not None:
            _check_severity(severity, "checks.add")
        config = getattr(expectation, "configuration", expectation)
        if not isinstance(config, dict) and hasattr(config, "type") and hasattr(config, "kwargs"):
            config = (
                config.to_json_dict()
                if hasattr(config, "to_json_dict")
                else {
                    "type": config.type,
                    "kwargs": config.kwargs,
                    "meta": getattr(config, "meta", None) or {},
                }
            )
            config.pop("severity", None)  # GE's own failure severity; ours lives in meta
        new = Expectation.from_json(config, "checks.add", severity=severity, drafted=False)
        same = [
            i
            for i, e in enumerate(self._items)
            if e.type == new.type
            and (e.kwargs == new.kwargs or (e.drafted and e.column == new.column))
        ]
        if not same:
            self._items.append(new)
            return self
        self._items[same[0]] = new
        for i in reversed(same[1:]):
            del self._items[i]
        return self

    @_strict
    def remove(self, *, column: str | None = None, type: Any = None) -> "Suite":
        """Remove every expectation on ``column`` and/or of ``type`` (class or snake name)."""
        if column is None and type is None:
            raise SuiteError(
                "checks.remove() needs column=..., type=... or both",
                fix='e.g. checks.remove(column="age", type="ExpectColumnValuesToBeBetween")',
            )
        hits = self._matching(column, type, "checks.remove")
        self._items = [e for i, e in enumerate(self._items) if i not in hits]
        return self

    @_strict
    def set_severity(
        self, severity: str, *, column: str | None = None, type: Any = None
    ) -> "Suite":
        """Set the severity of the matching expectations (all of them without filters)."""
        _check_severity(severity, "checks.set_severity")
        for i in self._matching(column, type, "checks.set_severity"):
            self._items[i] = replace(self._items[i], severity=severity)
        return self

    def _matching(self, column: str | None, type_: Any, where: str) -> list[int]:
        wanted = None if type_ is None else snake_type(type_)
        hits = [
            i
            for i, e in enumerate(self._items)
            if (column is None or e.column == column) and (wanted is None or e.type == wanted)
        ]
        if hits:
            return hits
        asked = ", ".join(
            f"{k}={v!r}" for k, v in (("column", column), ("type", type_)) if v is not None
        )
        if column is not None and column not in self.columns():
            close = difflib.get_close_matches(str(column), self.columns(), n=3)
            raise SuiteError(
                f"no expectation matches {asked}: the suite has no column {column!r}",
                where=where,
                fix=f"did you mean {', '.join(map(repr, close))}?"
                if close
                else f"columns: {', '.join(self.columns()[:12])}",
            )
        present = sorted(
            {class_name(e.type) for e in self._items if column is None or e.column == column}
        )
        scope = f"for column {column!r}" if column is not None else "in the suite"
        raise SuiteError(
            f"no expectation matches {asked}",
            where=where,
            fix=f"types {scope}: {', '.join(present) or 'none'}",
        )

    def columns(self) -> list[str]:
        """Every column the suite names, in order of first mention."""
        seen: dict[str, None] = {}
        for e in self._items:
            for key in _COLUMN_KEYS:
                value = e.kwargs.get(key)
                for col in value if isinstance(value, list) else [value]:
                    if isinstance(col, str):
                        seen.setdefault(col, None)
        return list(seen)

    def check_columns(self, schema_columns: list[str]) -> None:
        """Raise, listing them all, if the suite names columns the input schema lacks."""
        have = set(schema_columns)
        missing = [c for c in self.columns() if c not in have]
        if missing:
            raise SuiteError(
                f"the checks name {len(missing)} column(s) the model's input "
                f"does not have: {', '.join(map(repr, missing))}",
                where=f"checks suite {self.name!r}",
                fix="remove them with checks.remove(column=...) or draft the "
                "checks from the same columns as save_model(reference=...)",
            )

    def to_json(self) -> dict[str, Any]:
        """GE's suite JSON: ``{"name", "expectations", "meta"}``."""
        from nb2prod.core.version import (
            __version__,  # at call time: the package imports this module
        )

        return {
            "name": self.name,
            "expectations": [e.to_json() for e in self._items],
            "meta": {**json.loads(json.dumps(self.meta)), "nb2prod_version": __version__},
        }

    @classmethod
    def from_json(cls, data: Any) -> "Suite":
        """Load GE suite JSON (a dict or its text); errors name the expectation's index."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise SuiteError(
                    f"the suite is not valid JSON: {exc}",
                    fix="pass the dict Suite.to_json() returned",
                ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("expectations", []), list):
            raise SuiteError(
                f"a suite must be a dict with an 'expectations' list, got {type(data).__name__}",
                fix='write {"name": "checks", "expectations": [...]}',
            )
        items = [
            Expectation.from_json(e, f"suite {data.get('name') or ''!r}: expectations[{i}]")
            for i, e in enumerate(data.get("expectations", []))
        ]
        return cls(items, name=str(data.get("name") or "checks"), meta=data.get("meta"))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Expectation]:
        return iter(list(self._items))

    def __repr__(self) -> str:
        return suite_text(self)

    def _repr_html_(self) -> str:
        return suite_html(self)


# ---------------------------------------------------------------- drafting from data


@_strict
def expect(
    df: pd.DataFrame, *, margin: float = 0.1, max_categories: int = 50, name: str | None = None
) -> Suite:
    """Draft a suite from ``df`` (e.g. ``X_train``); see the module docstring for what."""
    if not isinstance(df, pd.DataFrame):
        raise SuiteError(
            f"n2p.expect() drafts checks from a pandas DataFrame, got {type(df).__name__}",
            fix="pass the model's inputs, e.g. X_train",
        )
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise SuiteError(f"margin={margin!r} must be a number >= 0", fix="e.g. margin=0.1")
    if (
        isinstance(max_categories, bool)
        or not isinstance(max_categories, int)
        or max_categories < 0
    ):
        raise SuiteError(
            f"max_categories={max_categories!r} must be an int >= 0", fix="e.g. max_categories=50"
        )
    names = list(df.columns)
    bad = [c for c in names if not isinstance(c, str)]
    if bad or len(set(names)) != len(names):
        what = (
            f"column name(s) {bad[:6]} are not strings"
            if bad
            else "the DataFrame has duplicate column names"
        )
        raise SuiteError(
            f"n2p.expect(): {what}; requests are JSON records keyed by name",
            fix="rename the columns, e.g. X.columns = X.columns.astype(str)",
        )
    suite = Suite(name=name or "checks")
    suite._items.append(
        _drafted("expect_table_columns_to_match_set", column_set=names, exact_match=True)
    )
    for col in names:
        suite._items.extend(_draft_column(col, df[col], float(margin), max_categories))
    return suite


def _drafted(kind: str, **kwargs: Any) -> Expectation:
    return Expectation(
        kind, _native(kwargs), "reject" if kind in SCHEMA_TYPES else "warn", drafted=True
    )


def _type_name(dtype: Any) -> str:
    """The ``type_`` GE's pandas backend resolves to this dtype's scalar type."""
    # equality, not identity: a numpy dtype equals ``object`` without being it
    return "object" if dtype == np.dtype(object) else dtype.type.__name__


def _draft_column(
    col: str, series: pd.Series, margin: float, max_categories: int
) -> list[Expectation]:
    dtype = series.dtype
    out = [
        _drafted("expect_column_to_exist", column=col),
        _drafted("expect_column_values_to_be_of_type", column=col, type_=_type_name(dtype)),
    ]
    values = series.dropna()
    if len(values) == len(series):
        out.append(_drafted("expect_column_values_to_not_be_null", column=col))
    if values.empty:
        return out
    is_bool = ptypes.is_bool_dtype(dtype)
    is_int = ptypes.is_integer_dtype(dtype) and not is_bool
    if ptypes.is_numeric_dtype(dtype) and not is_bool and not ptypes.is_complex_dtype(dtype):
        bounds = _range(values.to_numpy(dtype=float), margin, is_int)
        if bounds is not None:
            out.append(
                _drafted(
                    "expect_column_values_to_be_between",
                    column=col,
                    min_value=bounds[0],
                    max_value=bounds[1],
                )
            )
    is_text = isinstance(dtype, pd.StringDtype) or (
        dtype == np.dtype(object) and all(isinstance(v, str) for v in values)
    )
    if isinstance(dtype, pd.CategoricalDtype):
        value_set = dtype.categories.tolist()
    elif is_bool or ((is_int or is_text) and values.nunique() <= max_categories):
        value_set = sorted(values.unique().tolist())  # one type per column: sortable
    else:
        lengths = _range(values.str.len().to_numpy(dtype=float), margin, True) if is_text else None
        if lengths is not None:
            out.append(
                _drafted(
                    "expect_column_value_lengths_to_be_between",
                    column=col,
                    min_value=lengths[0],
                    max_value=lengths[1],
                )
            )
        return out
    if all(isinstance(v, (str, int, float, bool)) for v in value_set):
        out.append(_drafted("expect_column_values_to_be_in_set", column=col, value_set=value_set))
    return out


def _range(values: np.ndarray, margin: float, integer: bool) -> tuple[Any, Any] | None:
    """Widened (min, max) of the finite values; a side is None (open) if an inf was seen."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    pad = margin * ((high - low) if high > low else max(abs(low), 1.0))
    lo = _outward(low - pad, low, pad, integer, -1)
    lo = max(lo, type(lo)(0)) if low >= 0 else lo  # never seen negative: stays so
    hi = _outward(high + pad, high, pad, integer, 1)
    return (None if np.isneginf(values).any() else lo, None if np.isposinf(values).any() else hi)


def _outward(bound: float, seen: float, pad: float, integer: bool, side: int) -> Any:
    """Round ``bound`` away from the data to a step of at most pad/10, so it reads well."""
    step = 10.0 ** math.floor(math.log10(pad / 10)) if 0 < pad < math.inf else 0.0
    if integer:
        step = max(step, 1.0)
    if step == 0:
        return bound
    rounded = (math.ceil if side > 0 else math.floor)(bound / step) * step
    rounded = round(rounded, max(0, -math.floor(math.log10(step))))
    # float noise may push the rounded value past the data; then keep the exact bound
    if (rounded - seen) * side < 0:
        rounded = bound
    return int(rounded) if integer and float(rounded).is_integer() else float(rounded)
