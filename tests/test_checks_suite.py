"""Drafting, editing, storing and showing expectation suites (``nb2prod.checks.suite``)."""

import json
import subprocess
import sys

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pytest

from nb2prod.checks.suite import Suite, SuiteError, SuiteUsageError, expect
from nb2prod.core.errors import Nb2prodError

BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
LENGTHS = "expect_column_value_lengths_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
OF_TYPE = "expect_column_values_to_be_of_type"


@pytest.fixture
def frame():
    """Realistic training inputs: floats with NaN, ints, a categorical, text with None..."""
    rng = np.random.default_rng(7)
    n = 120
    radius = rng.normal(14.0, 3.0, n)
    radius[[3, 40]] = np.nan
    return pd.DataFrame({
        "mean radius": radius,
        "age": rng.integers(18, 90, n),
        "grade": rng.integers(1, 4, n),
        "color": pd.Categorical(rng.choice(["red", "green", "blue"], n),
                                categories=["blue", "green", "red", "violet"]),
        "comment": [None if i % 10 == 0 else f"note {i}" + "!" * (i % 7) for i in range(n)],
        "smoker": rng.random(n) < 0.3,
        "visited": pd.date_range("2024-01-01", periods=n, freq="D"),
    })


def by_key(suite):
    """{(column, type): expectation}; table-level expectations under column None."""
    found = {}
    for e in suite:
        assert (e.column, e.type) not in found, f"duplicate {e.column} {e.type}"
        found[(e.column, e.type)] = e
    return found


@pytest.fixture(scope="module")
def ge_validate():
    """Validate a DataFrame against suite JSON with real Great Expectations."""
    context = gx.get_context(mode="ephemeral")
    batches = context.data_sources.add_pandas("tests").add_dataframe_asset("frame") \
        .add_batch_definition_whole_dataframe("whole")

    def validate(df, suite_json):
        batch = batches.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(gx.ExpectationSuite(**suite_json))
        failed = {(r.expectation_config.kwargs.get("column"), r.expectation_config.type)
                  for r in result.results if not r.success}
        return result.success, failed
    return validate


# ---------------------------------------------------------------- drafting

def test_expect_drafts_schema_for_every_column_and_rejects_on_it(frame):
    suite = expect(frame)
    found = by_key(suite)

    table = found[(None, "expect_table_columns_to_match_set")]
    assert table.kwargs == {"column_set": list(frame.columns), "exact_match": True}
    types = {c: found[(c, OF_TYPE)].kwargs["type_"] for c in frame.columns}
    assert types == {"mean radius": "float64", "age": "int64", "grade": "int64",
                     "color": "CategoricalDtypeType", "comment": "str", "smoker": "bool",
                     "visited": "datetime64"}
    for col in frame.columns:
        assert found[(col, "expect_column_to_exist")].severity == "reject"
        assert found[(col, OF_TYPE)].severity == "reject"
    # not-null only where no nulls were seen
    assert {c for c, t in found if t == NOT_NULL} == set(frame.columns) - {"mean radius",
                                                                           "comment"}
    assert all(e.severity == "reject" for e in suite if e.type == NOT_NULL)
    assert all(e.drafted for e in suite)
    assert suite.columns() == list(frame.columns)


def test_expect_drafts_ranges_sets_and_lengths_that_warn(frame):
    found = by_key(expect(frame))

    radius = frame["mean radius"].dropna()
    low, high, span = radius.min(), radius.max(), radius.max() - radius.min()
    bounds = found[("mean radius", BETWEEN)].kwargs
    # widened by 10% of the span each side, rounded outward by at most another 1%
    assert low - 0.11 * span <= bounds["min_value"] <= low - 0.1 * span
    assert high + 0.1 * span <= bounds["max_value"] <= high + 0.11 * span

    age = found[("age", BETWEEN)].kwargs
    assert isinstance(age["min_value"], int) and isinstance(age["max_value"], int)
    assert age["min_value"] <= frame["age"].min() - 0.1 * np.ptp(frame["age"])
    assert ("age", IN_SET) not in found          # ~70 distinct ages: more than 50
    assert found[("grade", IN_SET)].kwargs["value_set"] == [1, 2, 3]
    # a categorical's set is its declared categories, seen or not
    assert found[("color", IN_SET)].kwargs["value_set"] == ["blue", "green", "red", "violet"]
    assert found[("smoker", IN_SET)].kwargs["value_set"] == [False, True]
    assert ("smoker", BETWEEN) not in found and ("visited", BETWEEN) not in found
    assert ("visited", IN_SET) not in found

    lengths = found[("comment", LENGTHS)].kwargs
    seen = frame["comment"].dropna().str.len()
    assert lengths["min_value"] <= seen.min() and lengths["max_value"] >= seen.max()
    assert ("comment", IN_SET) not in found
    drafted_checks = [e for e in found.values() if e.type in (BETWEEN, IN_SET, LENGTHS)]
    assert drafted_checks and all(e.severity == "warn" for e in drafted_checks)


def test_margin_controls_the_widening_and_max_categories_the_sets(frame):
    exact = by_key(expect(frame, margin=0))[("mean radius", BETWEEN)].kwargs
    assert exact == {"column": "mean radius", "min_value": frame["mean radius"].min(),
                     "max_value": frame["mean radius"].max()}
    wide = by_key(expect(frame, margin=0.5))[("mean radius", BETWEEN)].kwargs
    assert wide["max_value"] > frame["mean radius"].max() + 0.49 * np.ptp(
        frame["mean radius"].dropna())
    assert ("age", IN_SET) in by_key(expect(frame, max_categories=200))
    assert ("grade", IN_SET) not in by_key(expect(frame, max_categories=2))


def test_constant_infinite_and_non_negative_columns_get_sensible_ranges():
    df = pd.DataFrame({"const": [5.0] * 4, "neg": [-3.0] * 4, "zero": [0] * 4,
                       "inf": [1.0, 2.0, np.inf, 3.0], "all_nan": [np.nan] * 4,
                       "positive": [0.5, 1.0, 2.0, 10.5]})
    found = by_key(expect(df))
    bounds = {c: (found[(c, BETWEEN)].kwargs["min_value"], found[(c, BETWEEN)].kwargs["max_value"])
              for c in ("const", "neg", "zero", "inf", "positive")}
    assert bounds["const"] == (4.5, 5.5)        # margin x |value|
    assert bounds["neg"] == (-3.3, -2.7)
    assert bounds["zero"] == (0, 1)             # margin x 1, never below 0, whole numbers
    assert bounds["inf"] == (0.8, None)         # an infinite value leaves that side open
    assert bounds["positive"][0] == 0.0         # 0.5 - 1.0 would cross zero
    assert ("all_nan", BETWEEN) not in found and ("all_nan", NOT_NULL) not in found
    json.dumps(expect(df).to_json(), allow_nan=False)


def test_drafted_suite_passes_real_ge_on_its_own_data_and_catches_a_bad_value(frame, ge_validate):
    suite = expect(frame)
    assert ge_validate(frame, suite.to_json()) == (True, set())

    bad = frame.copy()
    bad.loc[5, "mean radius"] = 1000.0
    assert ge_validate(bad, suite.to_json()) == (False, {("mean radius", BETWEEN)})
    bad = frame.copy()
    bad.loc[5, "comment"] = "x" * 500
    bad.loc[6, "grade"] = 7
    assert ge_validate(bad, suite.to_json()) == (False, {("comment", LENGTHS),
                                                         ("grade", IN_SET), ("grade", BETWEEN)})


def test_drafted_type_names_pass_real_ge_for_every_common_dtype(ge_validate):
    df = pd.DataFrame({
        "Int64": pd.array([1, None, 3], dtype="Int64"),
        "boolean": pd.array([True, None, False], dtype="boolean"),
        "Float64": pd.array([1.5, None, 3.0], dtype="Float64"),
        "string": pd.array(["a", None, "b"], dtype="string"),
        "object": pd.Series(["a", 1, None], dtype=object),
        "object_str": pd.Series(["a", "b", "c"], dtype=object),
        "tz": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).tz_localize("UTC"),
        "int32": np.array([1, 2, 3], dtype="int32"),
        "float32": np.array([1, 2, 3], dtype="float32"),
        "timedelta": pd.to_timedelta([1, 2, 3], unit="s"),
    })
    suite = expect(df)
    types = {e.column: e.kwargs["type_"] for e in suite if e.type == OF_TYPE}
    assert types == {"Int64": "int64", "boolean": "bool", "Float64": "float64",
                     "string": "str", "object": "object", "object_str": "object",
                     "tz": "Timestamp", "int32": "int32", "float32": "float32",
                     "timedelta": "timedelta64"}
    assert ge_validate(df, suite.to_json()) == (True, set())
    # the type check really checks: float data fails an int column's drafted type
    assert ge_validate(df.assign(int32=[1.5, 2.0, 3.0]), suite.to_json())[1] >= {
        ("int32", OF_TYPE)}


def test_expect_does_not_import_great_expectations():
    code = ("import sys, pandas as pd; from nb2prod.checks.suite import expect; "
            "expect(pd.DataFrame({'a': [1.0]})); "
            "assert 'great_expectations' not in sys.modules, 'GE imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("call, message", [
    (lambda: expect([1, 2]), "pandas DataFrame, got list"),
    (lambda: expect(pd.DataFrame({"a": [1]}), margin=-1), "margin=-1"),
    (lambda: expect(pd.DataFrame({"a": [1]}), max_categories=2.5), "max_categories=2.5"),
    (lambda: expect(pd.DataFrame({0: [1]})), "are not strings"),
    (lambda: expect(pd.DataFrame([[1, 2]], columns=["a", "a"])), "duplicate column"),
])
def test_expect_refuses_bad_arguments_with_a_fix(call, message):
    with pytest.raises(SuiteError, match=message) as info:
        call()
    assert info.value.fix


def test_unknown_keyword_arguments_fail_at_call_time_with_the_valid_names():
    with pytest.raises(SuiteUsageError, match="margins; valid: df, margin, max_categories, name") \
            as info:
        expect(pd.DataFrame({"a": [1]}), margins=0.2)
    assert isinstance(info.value, TypeError) and isinstance(info.value, Nb2prodError)
    assert "margin=" in info.value.fix
    with pytest.raises(TypeError, match="valid: column, type"):
        expect(pd.DataFrame({"a": [1]})).remove(columns="a")


# ---------------------------------------------------------------- editing

def test_add_ge_object_replaces_the_drafted_expectation_and_rejects_by_default(frame):
    suite = expect(frame)
    position = [i for i, e in enumerate(suite) if (e.column, e.type) == ("mean radius", BETWEEN)]
    returned = suite.add(gxe.ExpectColumnValuesToBeBetween(column="mean radius", min_value=0,
                                                           max_value=60, meta={"why": "physics"}))
    assert returned is suite
    added = list(suite)[position[0]]
    assert (added.type, added.severity, added.drafted) == (BETWEEN, "reject", False)
    assert added.kwargs == {"column": "mean radius", "min_value": 0.0, "max_value": 60.0}
    assert [e.type for e in suite].count(BETWEEN) == len(
        [c for c in frame.columns if (c, BETWEEN) in by_key(expect(frame))])
    stored = suite.to_json()["expectations"][position[0]]
    assert stored["meta"] == {"why": "physics", "nb2prod": {"severity": "reject",
                                                            "drafted": False}}
    assert "severity" not in stored   # GE's own failure severity is not ours: left out


def test_add_dicts_class_names_severity_and_rerun_cells(frame):
    suite = expect(frame)
    size = len(suite)
    mean = {"type": "ExpectColumnMeanToBeBetween",
            "kwargs": {"column": "age", "min_value": np.int64(20), "max_value": np.float64(80)}}
    suite.add(mean, severity="fallback").add(mean, severity="fallback")  # a re-run cell
    assert len(suite) == size + 1
    last = list(suite)[-1]
    assert (last.type, last.severity) == ("expect_column_mean_to_be_between", "fallback")
    assert type(last.kwargs["min_value"]) is int    # numpy scalars stored as JSON types
    suite.add(gxe.ExpectColumnValuesToBeInSet(column="grade", value_set=[1, 2, 3, 4]),
              severity="warn")
    assert by_key(suite)[("grade", IN_SET)].kwargs["value_set"] == [1, 2, 3, 4]
    assert not by_key(suite)[("grade", IN_SET)].drafted


@pytest.mark.parametrize("thing, message", [
    (42, "a GE expectation or a dict, got int"),
    ({"type": "expect_column_to_exist"}, "no 'kwargs'"),
    ({"kwargs": {"column": "a"}}, "no 'type'"),
    ({"type": "column_exists", "kwargs": {}}, "not an expectation type"),
    ({"type": "expect_column_to_exist", "kwargs": {"column": object()}}, "cannot be stored"),
])
def test_add_refuses_what_is_not_an_expectation(thing, message):
    with pytest.raises(SuiteError, match=message) as info:
        Suite().add(thing)
    assert info.value.where == "checks.add" and info.value.fix


def test_add_refuses_an_unknown_severity():
    with pytest.raises(SuiteError, match="'block' is not known; valid: reject, fallback, warn"):
        Suite().add({"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
                    severity="block")


def test_remove_by_column_and_type_in_either_spelling(frame):
    suite = expect(frame)
    assert suite.remove(column="mean radius", type="ExpectColumnValuesToBeBetween") is suite
    assert ("mean radius", BETWEEN) not in by_key(suite)
    suite.remove(column="grade", type=IN_SET).remove(type=gxe.ExpectColumnValueLengthsToBeBetween)
    assert ("grade", IN_SET) not in by_key(suite) and ("comment", LENGTHS) not in by_key(suite)
    suite.remove(column="smoker")
    assert not [e for e in suite if e.column == "smoker"]
    assert ("age", BETWEEN) in by_key(suite)   # untouched


def test_remove_says_what_exists_when_nothing_matches(frame):
    suite = expect(frame)
    with pytest.raises(SuiteError) as info:
        suite.remove(column="smoker", type="ExpectColumnValuesToBeBetween")
    assert "no expectation matches column='smoker'" in str(info.value)
    assert "ExpectColumnValuesToBeInSet" in info.value.fix
    assert "ExpectColumnToExist" in info.value.fix
    with pytest.raises(SuiteError, match="has no column 'mean radios'") as info:
        suite.remove(column="mean radios")
    assert "'mean radius'" in info.value.fix
    with pytest.raises(SuiteError, match="needs column=..., type=... or both"):
        suite.remove()
    assert len(suite) == len(expect(frame))   # failed calls changed nothing


def test_set_severity_by_column_type_or_everything(frame):
    suite = expect(frame)
    assert suite.set_severity("fallback", column="mean radius") is suite
    assert {e.severity for e in suite if e.column == "mean radius"} == {"fallback"}
    suite.set_severity("reject", type="ExpectColumnValuesToBeInSet")
    assert {e.severity for e in suite if e.type == IN_SET} == {"reject"}
    assert by_key(suite)[("age", BETWEEN)].severity == "warn"
    suite.set_severity("warn")
    assert {e.severity for e in suite} == {"warn"}
    with pytest.raises(SuiteError, match="valid: reject, fallback, warn"):
        suite.set_severity("error", column="age")
    with pytest.raises(SuiteError, match="no expectation matches"):
        suite.set_severity("warn", column="visited", type=BETWEEN)


# ---------------------------------------------------------------- storing

def test_json_round_trip_is_lossless_and_strict_json(frame):
    suite = expect(frame, name="breast_cancer").add(
        gxe.ExpectColumnValuesToBeBetween(column="mean radius", min_value=0, max_value=60),
        severity="fallback")
    data = suite.to_json()
    text = json.dumps(data, allow_nan=False)
    assert data["name"] == "breast_cancer" and data["meta"]["nb2prod_version"]
    assert Suite.from_json(data).to_json() == data
    assert Suite.from_json(text).to_json() == data
    again = Suite.from_json(data)
    assert [(e.type, e.kwargs, e.severity, e.drafted) for e in again] == \
        [(e.type, e.kwargs, e.severity, e.drafted) for e in suite]


def test_suite_json_loads_in_plain_ge_unchanged(frame, ge_validate):
    data = expect(frame).set_severity("fallback", column="age").to_json()
    plain = gx.ExpectationSuite(**data)
    assert [e.expectation_type for e in plain.expectations] == \
        [e["type"] for e in data["expectations"]]
    assert plain.expectations[0].meta["nb2prod"] == {"severity": "reject", "drafted": True}
    assert ge_validate(frame, data) == (True, set())


def test_a_plain_ge_suite_loads_with_hand_added_defaults():
    plain = gx.ExpectationSuite(name="theirs", expectations=[
        gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=1),
        gxe.ExpectColumnToExist(column="b")]).to_json_dict()
    suite = Suite.from_json(plain)
    assert suite.name == "theirs"
    assert [(e.severity, e.drafted) for e in suite] == [("reject", False), ("reject", False)]
    assert suite.columns() == ["a", "b"]


@pytest.mark.parametrize("data, message", [
    ([1, 2], "must be a dict with an 'expectations' list, got list"),
    ({"expectations": {"type": "x"}}, "an 'expectations' list"),
    ("{not json", "not valid JSON"),
    ({"expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}, "oops"]},
     r"expectations\[1\]: an expectation must be a GE expectation or a dict"),
    ({"expectations": [{"kwargs": {"column": "a"}}]}, r"expectations\[0\]: .*no 'type'"),
    ({"expectations": [{"type": "expect_column_to_exist"}]}, r"expectations\[0\]: .*no 'kwargs'"),
    ({"expectations": [{"type": "expect_column_to_exist", "kwargs": ["a"]}]},
     r"expectations\[0\]: 'kwargs' must be a dict, got list"),
    ({"name": "s", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "b"},
         "meta": {"nb2prod": {"severity": "fatal"}}}]},
     r"suite 's': expectations\[1\]: severity 'fatal' is not known; valid: reject"),
])
def test_malformed_suite_json_names_the_expectation(data, message):
    with pytest.raises(SuiteError, match=message):
        Suite.from_json(data)


def test_check_columns_lists_every_missing_column(frame):
    suite = expect(frame)
    assert suite.check_columns(list(frame.columns)) is None
    with pytest.raises(Nb2prodError) as info:
        suite.check_columns(["mean radius", "age", "grade", "color"])
    message = str(info.value)
    assert "3 column(s)" in message
    assert all(f"'{c}'" in message for c in ("comment", "smoker", "visited"))
    assert info.value.where == "checks suite 'checks'" and "checks.remove" in info.value.fix


# ---------------------------------------------------------------- showing

def test_repr_is_a_plain_text_table_one_line_per_expectation(frame):
    suite = expect(frame).add({"type": "expect_column_mean_to_be_between",
                               "kwargs": {"column": "age", "min_value": 20}}, severity="warn")
    lines = repr(suite).splitlines()
    assert len(lines) == len(suite) + 2
    assert lines[0].startswith("Suite 'checks': ") and "warn" in lines[0]
    assert lines[1].split() == ["#", "column", "check", "parameters", "severity", "origin"]
    radius = next(line for line in lines if "ExpectColumnValuesToBeBetween" in line
                  and "mean radius" in line)
    assert "min_value=" in radius and radius.split()[-2:] == ["warn", "drafted"]
    assert lines[-1].split()[-2:] == ["warn", "hand-added"]
    assert "ExpectColumnMeanToBeBetween" in lines[-1]


def test_repr_html_is_a_table_with_escaped_cells():
    suite = expect(pd.DataFrame({"<b>x</b>": ["<script>", "ok"]}))
    page = suite._repr_html_()
    assert page.count("<tr>") == len(suite) + 1 and "<table" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script>" not in page and "&#x27;&lt;script&gt;&#x27;" in page
