"""Parity: the compiled validator gives Great Expectations' verdicts, row for row.

Hypothesis draws suites (a random mix of the 13 compiled expectation types, random
arguments: ``mostly``, strict bounds, value sets, regexes and type names from small
pools) and DataFrames (floats with NaN, None, ±inf, -0.0 and values on the bounds;
ints; bools; strings with empty and non-ASCII values; object columns mixing types),
runs both validators and compares, per expectation: ``success`` and
``unexpected_rows``. Where GE raises (strings compared with numbers, a missing column)
only the verdict is compared: GE names no rows, the compiled validator names the rows
it could not compare.

Fixed cases complete the draws: every type and strictness on columns of boundary
values, other dtypes (categorical, nullable Int64/Float64/boolean, float32, int32,
uint64, datetimes with and without a time zone), and the configurations the compiled
validator refuses at compile time.

Each example costs one GE run (~50-150 ms with its context). Profiles:

- ``ci`` (default): 200 examples; the whole file takes about a minute of CPU.
- ``thorough``: 3,000 examples (~8-10 min), for changes to ``nb2prod/checks/compiled.py``::

      HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/test_checks_parity.py

Not drawn, on purpose: bytes and unhashable values in object columns (no JSON request
produces them) and regexes outside a small pool (both sides run Python's ``re``; the
pool checks the plumbing, not the regex engine).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2prod.checks import ge_runner
from nb2prod.checks.compiled import CompiledSuite, SuiteError

# pandas warns, through GE, that a pattern with groups is used as a regex: it is meant so.
pytestmark = pytest.mark.filterwarnings("ignore:This pattern is interpreted:UserWarning")

settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Bounds, set members and data share one small pool so that values land on the bounds;
# hypothesis picks among one_of's branches evenly, so the pool is listed thrice.
NUMBERS = [-1, 0, 1, 2, 2.5, 60]
POOL = st.sampled_from([-1.0, -0.0, 0.0, 1.0, 2.0, 2.5, 60.0, 61.5, 1e16,
                        math.inf, -math.inf, math.nan])
FLOATS = st.one_of(POOL, POOL, POOL, st.floats(-100, 100), st.none())
TEXT = st.sampled_from(["", "a", "A", "ab", "é", "Zürich", "1", "2.5", "a.b", "ß", "日本"])
MIXED = st.one_of(st.none(), st.just(math.nan), st.sampled_from(NUMBERS),
                  st.booleans(), TEXT, st.floats(allow_nan=False, width=32))
REGEXES = ["^a", "a", "^$", r"\d", "^[A-Z]", "é", "1", r"\.", "(?i)A", "^.{2}$",
           r"^-?\d+(\.\d+)?$", "(?s).*"]
TYPE_NAMES = ["int", "float", "str", "bool", "float64", "int64", "object", "bool_",
              "str_", "float32", "Int64Dtype", "StringDtype", "list"]
SET_MEMBERS = st.sampled_from([0, 1, 1.0, 2, 2.5, -1, "a", "", "é", "1", True, False])
COLUMNS = ["f", "i", "b", "s", "o"]


@st.composite
def frames(draw) -> pd.DataFrame:
    """A frame of 0-7 rows: float64, int64, bool, str and object columns, or floats only
    (the request path's common case, which the compiled validator answers in bulk)."""
    n = draw(st.integers(0, 7))
    cells = lambda values: draw(st.lists(values, min_size=n, max_size=n))  # noqa: E731
    if draw(st.integers(0, 2)) == 0:
        return pd.DataFrame({c: pd.Series(cells(FLOATS), dtype="float64") for c in COLUMNS})
    # Eight or more float columns among others are read as one block, as are all-float frames.
    extra = {f"g{k}": pd.Series(cells(FLOATS), dtype="float64")
             for k in range(7 if draw(st.booleans()) else 0)}
    return pd.DataFrame({**extra,
        "f": pd.Series(cells(FLOATS), dtype="float64"),
        "i": pd.Series(cells(st.sampled_from(NUMBERS[:4] + [60, 2 ** 53 + 1])), dtype="int64"),
        "b": pd.Series(cells(st.booleans()), dtype="bool"),
        "s": pd.Series(cells(TEXT | st.none()), dtype="str"),
        "o": pd.Series(cells(MIXED), dtype=object),
    })


def _column(draw) -> str:
    return draw(st.sampled_from(COLUMNS * 3 + ["missing"]))


def _mostly(draw) -> dict:
    mostly = draw(st.sampled_from([None, 0.0, 0.5, 0.8, 1.0]) | st.floats(0, 1))
    return {} if mostly is None else {"mostly": mostly}


def _bounds(draw, values) -> dict:
    lo, hi = draw(st.none() | values), draw(st.none() | values)
    if lo is None and hi is None:
        hi = draw(values)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo  # min_value > max_value is refused at compile time (own test)
    return {"min_value": lo, "max_value": hi, "strict_min": draw(st.booleans()),
            "strict_max": draw(st.booleans())}


@st.composite
def expectations(draw) -> dict:
    """One expectation of a compiled type (or one aggregate, to be listed unsupported)."""
    kind = draw(st.sampled_from([
        "exist", "match_set", "not_null", "null", "between", "between", "in_set", "not_in_set",
        "of_type", "in_type_list", "regex", "not_regex", "lengths", "unique", "mean"]))
    c = _column(draw)
    simple = {"not_null": "expect_column_values_to_not_be_null",
              "null": "expect_column_values_to_be_null",
              "unique": "expect_column_values_to_be_unique"}
    if kind in simple:
        made = (simple[kind], {"column": c, **_mostly(draw)})
    elif kind == "exist":
        made = ("expect_column_to_exist",
                {"column": c, "column_index": draw(st.sampled_from([None, 0, 1, 4, 9]))})
    elif kind == "match_set":
        made = ("expect_table_columns_to_match_set",
                {"column_set": draw(st.lists(st.sampled_from(COLUMNS + ["x"]), unique=True)),
                 "exact_match": draw(st.sampled_from([True, False, None]))})
    elif kind == "between":
        numbers = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS),
                            st.floats(-100, 100))
        made = ("expect_column_values_to_be_between", {"column": c, **_mostly(draw),
                                                       **_bounds(draw, numbers)})
    elif kind in ("in_set", "not_in_set"):
        made = (f"expect_column_values_to_{'not_' if kind == 'not_in_set' else ''}be_in_set",
                {"column": c, "value_set": draw(st.lists(SET_MEMBERS, max_size=5)),
                 **_mostly(draw)})
    elif kind == "of_type":
        made = ("expect_column_values_to_be_of_type",
                {"column": c, "type_": draw(st.sampled_from(TYPE_NAMES)), **_mostly(draw)})
    elif kind == "in_type_list":
        made = ("expect_column_values_to_be_in_type_list",
                {"column": c, **_mostly(draw), "type_list": draw(
                    st.lists(st.sampled_from(TYPE_NAMES), min_size=1, max_size=3))})
    elif kind in ("regex", "not_regex"):
        made = (f"expect_column_values_to_{'not_' if kind == 'not_regex' else ''}match_regex",
                {"column": c, "regex": draw(st.sampled_from(REGEXES)), **_mostly(draw)})
    elif kind == "lengths":
        made = ("expect_column_value_lengths_to_be_between",
                {"column": c, **_mostly(draw), **_bounds(draw, st.integers(0, 4))})
    else:
        made = ("expect_column_mean_to_be_between", {"column": "f", "min_value": 0})
    type_, kwargs = made
    severity = draw(st.sampled_from([None, "reject", "fallback", "warn"]))
    meta = {} if severity is None else {"nb2prod": {"severity": severity}}
    return {"type": type_, "kwargs": {k: v for k, v in kwargs.items() if v is not None},
            "meta": meta}


def assert_parity(df: pd.DataFrame, suite: dict) -> None:
    """Both validators agree on every expectation of ``suite`` for ``df``."""
    compiled = CompiledSuite(suite)
    ours = compiled.validate(df)
    theirs, raised = ge_runner.run(df, suite)
    unsupported = dict(compiled.unsupported)
    assert ours.skipped == tuple(unsupported.values())
    by_index = {r.index: r for r in ours.results}
    assert set(by_index) | set(unsupported) == set(range(len(suite["expectations"])))
    for ge in theirs.results:
        if ge.index in unsupported:
            assert ge.index not in by_index
            continue
        mine = by_index[ge.index]
        where = f"expectation {ge.index} {suite['expectations'][ge.index]}"
        assert (mine.type, mine.column, mine.severity) == (ge.type, ge.column, ge.severity)
        assert mine.element_count == len(df)
        if ge.index in raised:  # GE failed it with an exception: compare the verdict only
            assert not ge.success and not mine.success, (where, raised[ge.index])
            continue
        assert mine.success == ge.success, (where, mine, ge)
        assert mine.unexpected_rows == ge.unexpected_rows, (where, mine, ge)


@pytest.mark.slow
@given(df=frames(), exps=st.lists(expectations(), min_size=4, max_size=12))
def test_compiled_matches_great_expectations(df, exps):
    assert_parity(df, {"name": "parity", "expectations": exps})


@pytest.mark.parametrize("c", COLUMNS + ["g0", "missing"])
def test_parity_on_every_boundary(c):
    """Every type x strictness on one column of boundary values: one GE run per column.

    (GE's cost grows faster than linearly with the suite: one run per column is faster.)"""
    df = pd.DataFrame({
        "f": [0.0, 2.5, -0.0, np.nan, np.inf, -np.inf, 1.0, None, 60.0],
        "i": [0, 2, -1, 60, 1, 2 ** 53 + 1, 0, 2, 61],
        "b": [True, False, True, True, False, True, True, False, True],
        "s": ["", "a", None, "é", "ab", "1", "A", "日本", "a"],
        "o": pd.Series([0, 2.5, "a", None, True, np.nan, "", 1.0, -1], dtype=object),
        # Eight float columns are read as one block, whose minimum and maximum can vouch
        # for a range: g0 sits inside [0, 2.5], on both ends.
        "g0": [0.0, 2.5, 1.0, np.nan, 2.5, 0.0, -0.0, 0.5, 2.0],
        **{f"g{k}": np.linspace(-k, 60 + k, 9) for k in range(1, 7)},
    })
    exps = [{"type": "expect_table_columns_to_match_set",
             "kwargs": {"column_set": COLUMNS, "exact_match": exact}} for exact in (True, False)]
    for col in [{"column": c}]:
        exps += [{"type": t, "kwargs": col} for t in (
            "expect_column_to_exist", "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_null", "expect_column_values_to_be_unique")]
        for strict_min in (False, True):
            for strict_max in (False, True):
                strict = {"strict_min": strict_min, "strict_max": strict_max}
                exps += [{"type": "expect_column_values_to_be_between",
                          "kwargs": {**col, **bounds, **strict}}
                         for bounds in ({"min_value": 0, "max_value": 2.5}, {"min_value": 0},
                                        {"max_value": 60}, {"min_value": -0.0, "max_value": 0})]
                exps.append({"type": "expect_column_value_lengths_to_be_between",
                             "kwargs": {**col, "min_value": 0, "max_value": 2, **strict}})
        exps += [{"type": f"expect_column_values_to_{neg}be_in_set",
                  "kwargs": {**col, "value_set": [0, 2.5, "a", True, "", 60]}}
                 for neg in ("", "not_")]
        exps += [{"type": f"expect_column_values_to_{neg}match_regex",
                  "kwargs": {**col, "regex": r}} for r in REGEXES[::2] for neg in ("", "not_")]
        exps += [{"type": "expect_column_values_to_be_of_type", "kwargs": {**col, "type_": t}}
                 for t in TYPE_NAMES]
        exps += [{"type": "expect_column_values_to_be_in_type_list",
                  "kwargs": {**col, "type_list": [t, "str"]}} for t in TYPE_NAMES]
        exps += [{"type": "expect_column_values_to_be_between",
                  "kwargs": {**col, "min_value": 0, "max_value": 2.5, "mostly": m}}
                 for m in (0.0, 0.5, 0.6, 2 / 3, 0.75, 1.0)]
    assert_parity(df, {"name": "boundaries", "expectations": exps})


_DATES = ["2020-01-01", None, "2021-06-01 12:00", "2020-01-01", "2019-12-31"]
OTHER_DTYPES = {
    "category": pd.Series(["a", "b", None, "a", "zz"], dtype="category"),
    "Int64": pd.Series([1, None, 3, 60, 2 ** 53 + 1], dtype="Int64"),
    "Float64": pd.Series([1.5, None, np.nan, 60.0, -1], dtype="Float64"),
    "boolean": pd.Series([True, None, False, True, True], dtype="boolean"),
    "float32": pd.Series([0.1, 1.1, np.nan, 60, 2.5], dtype="float32"),
    "int32": pd.Series([0, 1, 2, 60, 61], dtype="int32"),
    "uint64": pd.Series([0, 1, 2 ** 63 + 5, 60, 61], dtype="uint64"),
    "datetime64[ns]": pd.Series(pd.to_datetime(_DATES, format="ISO8601"), dtype="datetime64[ns]"),
    "datetime64[us, UTC]": pd.Series(pd.to_datetime(_DATES, format="ISO8601").tz_localize("UTC")),
}


@pytest.mark.parametrize("dtype", OTHER_DTYPES)
def test_parity_on_other_dtypes(dtype):
    """Extension dtypes, narrow numbers and dates: pandas' own paths, one GE run each."""
    df = pd.DataFrame({"c": OTHER_DTYPES[dtype]})
    exps = [{"type": f"expect_column_values_to_{t}", "kwargs": {"column": "c", **kw}}
            for t, kw in [
        ("be_in_set", {"value_set": [1, "a", True, 60, "2020-01-01"]}),
        ("not_be_in_set", {"value_set": [1, "a", "2020-01-01"]}),
        ("match_regex", {"regex": "^1|^a|00:00"}), ("be_unique", {}), ("not_be_null", {}),
        ("be_of_type", {"type_": "int"}),
        ("be_in_type_list", {"type_list": ["int", "str", "CategoricalDtype", "Int64Dtype"]}),
        ("be_between", {"min_value": 0.1, "max_value": 60}),
        ("be_between", {"min_value": "2020-01-01T00:00:00", "max_value": "2021-01-01T00:00:00"}),
        ("be_between", {"max_value": "2020-06-01T00:00:00+00:00", "strict_max": True})]]
    exps.append({"type": "expect_column_value_lengths_to_be_between",
                 "kwargs": {"column": "c", "min_value": 1, "max_value": 3}})
    assert_parity(df, {"name": dtype, "expectations": exps})


REFUSED = [  # the compiled validator refuses these at compile time ...
    ("expect_column_values_to_be_between", {"min_value": 5, "max_value": 1}),
    ("expect_column_values_to_match_regex", {"regex": "("}),
    ("expect_column_values_to_not_match_regex", {"regex": "[a-"}),
    ("expect_column_values_to_be_of_type", {"type_": "flaot64"}),
    ("expect_column_values_to_be_in_type_list", {"type_list": []}),
    ("expect_column_values_to_be_in_type_list", {"type_list": ["nope"]}),
]


@pytest.mark.parametrize("df,passes", [
    (pd.DataFrame({"c": [1.0, 2.0]}), []),
    (pd.DataFrame({"c": pd.Series(["a", 1], dtype=object)}), []),
    # pandas compiles a pattern only when there is text to search: with no value in the
    # column, GE passes a regex that does not compile.
    (pd.DataFrame({"c": pd.Series([], dtype=float)}), [1, 2]),
    (pd.DataFrame({"c": [np.nan, None]}, dtype=object), [1, 2]),
], ids=["floats", "objects", "empty", "all-null"])
def test_what_is_refused_at_compile_time_fails_in_ge(df, passes):
    """GE fails these on any column holding a value: refusing them early loses nothing."""
    for type_, kwargs in REFUSED:
        with pytest.raises(SuiteError):
            CompiledSuite({"name": "r", "expectations": [
                {"type": type_, "kwargs": {"column": "c", **kwargs}}]})
    result = ge_runner.validate(df, {"name": "r", "expectations": [
        {"type": type_, "kwargs": {"column": "c", **kwargs}} for type_, kwargs in REFUSED]})
    assert [i for i, r in enumerate(result.results) if r.success] == passes


@pytest.mark.parametrize("index", [None, "named"])
def test_parity_holds_for_a_non_default_index(index):
    """GE's rows are positions after reset_index: a frame's own index never leaks."""
    df = pd.DataFrame({"f": [1.0, 70.0, np.nan, 5.0]},
                      index=[10, 20, 30, 40] if index is None else list("wxyz"))
    assert_parity(df, {"name": "index", "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "f", "min_value": 0, "max_value": 60}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "f"}}]})
