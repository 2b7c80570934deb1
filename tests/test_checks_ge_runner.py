"""Batch validation with real Great Expectations: our suite JSON in, our results out."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nb2prod.checks import ge_runner
from nb2prod.checks.compiled import SuiteError

SUITE = {
    "name": "breast_cancer",
    "meta": {"nb2prod": {"drafted_from": "X_train"}},
    "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "mean radius", "min_value": 0, "max_value": 60, "mostly": 0.95},
         "meta": {"nb2prod": {"severity": "warn", "drafted": True}}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "mean radius"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "mean radius"},
         "meta": {"nb2prod": {"severity": "fallback"}}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "site", "value_set": ["left", "right"]}},
        {"type": "expect_column_mean_to_be_between",
         "kwargs": {"column": "mean radius", "min_value": 0, "max_value": 30}},
    ],
}

FRAME = pd.DataFrame({"mean radius": [12.0, 71.2, np.nan, 65.0],
                      "site": ["left", "centre", "right", None]},
                     index=[100, 101, 102, 103])  # rows are positions, never these labels


def test_results_map_back_in_suite_order():
    result = ge_runner.validate(FRAME, SUITE)
    assert [r.index for r in result.results] == [0, 1, 2, 3, 4]
    assert [r.type for r in result.results] == [e["type"] for e in SUITE["expectations"]]
    between, exists, not_null, in_set, mean = result.results
    assert (between.success, between.unexpected_rows, between.unexpected_values) == (
        False, (1, 3), (71.2, 65.0))
    assert (between.severity, between.column, between.element_count) == ("warn", "mean radius", 4)
    assert between.expected == "between 0 and 60"
    assert (exists.success, exists.unexpected_rows, exists.severity) == (True, (), "reject")
    assert (not_null.success, not_null.unexpected_rows, not_null.unexpected_values[0] != 0) == (
        False, (2,), True)
    assert not_null.severity == "fallback"
    assert (in_set.success, in_set.unexpected_rows, in_set.unexpected_values) == (
        False, (1,), ("centre",))
    assert in_set.expected == "in {'left', 'right'}"
    # Aggregates run here although the request path cannot run them.
    assert (mean.success, mean.unexpected_rows) == (False, ())
    assert mean.expected == "column mean to be between (min_value=0, max_value=30)"


def test_our_suite_json_loads_unchanged_in_plain_great_expectations():
    import great_expectations as gx
    suite = gx.ExpectationSuite(**copy.deepcopy(SUITE))
    assert len(suite.expectations) == len(SUITE["expectations"])
    assert suite.expectations[0].meta["nb2prod"] == {"severity": "warn", "drafted": True}
    back = suite.to_json_dict()
    assert back["expectations"][0]["meta"] == SUITE["expectations"][0]["meta"]
    assert back["expectations"][0]["kwargs"]["max_value"] == 60
    assert back["meta"]["nb2prod"] == SUITE["meta"]["nb2prod"]


def test_ge_severity_follows_ours_on_a_copy():
    original = copy.deepcopy(SUITE)
    given = ge_runner.ge_suite_dict(SUITE)
    assert [e["severity"] for e in given["expectations"]] == [
        "warning", "critical", "critical", "critical", "critical"]
    assert [e["id"] for e in given["expectations"]] == [f"nb2prod-{i}" for i in range(5)]
    assert SUITE == original


def test_what_ge_cannot_evaluate_fails_with_its_message():
    suite = {"name": "errors", "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "site", "min_value": 0, "max_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "missing"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "mean radius", "min_value": 5, "max_value": 1}}]}
    result, errors = ge_runner.run(FRAME, suite)
    assert [(r.success, r.unexpected_rows) for r in result.results] == [(False, ())] * 3
    assert "same type" in errors[0]
    assert 'column "missing"' in errors[1]
    assert "greater than max_value" in errors[2]


def test_ge_refusals_raise_instead_of_dropping_expectations():
    unknown = {"name": "u", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "site"}},
        {"type": "expect_column_values_to_be_wonderful", "kwargs": {"column": "site"}}]}
    with pytest.raises(SuiteError, match=r"does not know expectation\(s\) 1 "):
        ge_runner.validate(FRAME, unknown)
    bad_kwargs = {"name": "b", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "site", "colour": 1,
                                                                   "min_value": 0}}]}
    with pytest.raises(SuiteError, match="extra fields not permitted"):
        ge_runner.validate(FRAME, bad_kwargs)
    with pytest.raises(SuiteError, match="severity 'loud'"):
        ge_runner.validate(FRAME, {"name": "s", "expectations": [
            {"type": "expect_column_to_exist", "kwargs": {"column": "site"},
             "meta": {"nb2prod": {"severity": "loud"}}}]})


def test_no_progress_bars(capfd):
    ge_runner.validate(FRAME, SUITE)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err


def test_great_expectations_is_imported_only_when_validating():
    code = ("import sys\nimport nb2prod.checks.ge_runner\n"
            "assert 'great_expectations' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_validating_again_runs_only_new_expectations_and_matches_a_full_run(monkeypatch):
    from nb2prod.checks import validation

    production = copy.deepcopy(SUITE)
    production["expectations"][0]["kwargs"]["max_value"] = 70  # a range drafted from other data
    production["expectations"].insert(0, {"type": "expect_column_to_exist",
                                          "kwargs": {"column": "site"}})
    earlier = validation.validate(FRAME, SUITE, [])
    ran = []
    real = ge_runner.validate
    monkeypatch.setattr(ge_runner, "validate", lambda df, s: ran.append(s) or real(df, s))
    again = validation.validate_again(FRAME, production, SUITE, earlier)
    assert [len(s["expectations"]) for s in ran] == [2]  # the changed range and the new one
    assert repr(again) == repr(real(FRAME, production))  # repr: NaN values compare unequal
    assert [r.index for r in again.results] == list(range(6))
