"""The judgements, on contracts built by hand: directions, tolerance, schema differences."""

from pathlib import Path

import pytest

from nb2prod.authoring.drafting import evaluate_gate
from nb2prod.core.spec import ColumnSpec, Contract, at_most
from nb2prod.lifecycle import promotion

COLUMNS = (ColumnSpec("age", "integer", False), ColumnSpec("income", "float", True))


def contract(metrics, gate, columns=COLUMNS):
    return Contract("m", columns, "0" * 64, metrics=metrics, gate=evaluate_gate(gate, metrics))


def verdict(candidate, production, tolerance=0.0, on="the candidate's holdout"):
    case = promotion.Case(candidate, Path("/nonexistent"), production, production.metrics, on,
                          tolerance)
    return promotion._not_worse(case)


@pytest.mark.parametrize("mine, theirs, tolerance, passed, says", [
    (0.95, 0.94, 0.0, True, "better"),
    (0.94, 0.94, 0.0, True, "equal"),
    (0.93, 0.94, 0.0, False, "worse by 0.01"),
    (0.93, 0.94, 0.02, True, "worse by 0.01 (within tolerance)"),
])
def test_higher_is_better_for_an_at_least_gate(mine, theirs, tolerance, passed, says):
    got = verdict(contract({"auc": mine}, {"auc": 0.9}), contract({"auc": theirs}, {"auc": 0.9}),
                  tolerance)
    assert got.passed is passed
    assert f"auc {mine:.4g} vs. {theirs:.4g}: {says}" in got.details[0]


def test_lower_is_better_for_an_at_most_gate():
    gate = {"rmse": at_most(60.0)}
    assert verdict(contract({"rmse": 50.0}, gate), contract({"rmse": 52.0}, gate)).passed
    worse = verdict(contract({"rmse": 53.0}, gate), contract({"rmse": 52.0}, gate))
    assert not worse.passed and "worse by 1" in worse.details[0]


def test_only_gate_metrics_are_compared_and_the_basis_is_said():
    got = verdict(contract({"auc": 0.9, "latency": 99.0}, {"auc": 0.8}),
                  contract({"auc": 0.9, "latency": 1.0}, {"auc": 0.8}), on=promotion.OWN_HOLDOUT)
    assert got.passed and len(got.details) == 2
    assert "production scored on its own holdout (stored metrics" in got.details[-1]
    nothing = verdict(contract({"auc": 0.1}, {}), contract({"auc": 0.9}, {}))
    assert nothing.passed and "the gate names no metric" in nothing.details[0]


def test_schema_changes_name_every_column_removed_added_or_retyped():
    new = (ColumnSpec("age", "float", False), ColumnSpec("city", "string", False))
    assert promotion.schema_changes(COLUMNS, new) == (
        "column 'income' removed", "column 'city' added (string)", "column 'age': integer -> float")
    assert promotion.schema_changes(COLUMNS, tuple(reversed(COLUMNS))) == ()  # order is free
    region = (ColumnSpec("region", "category", False, ("n", "s")),)
    assert promotion.schema_changes(region, (ColumnSpec("region", "category", True, ("n", "s")),)) \
        == ()  # nulls are a property of the sample, not of the service
    assert promotion.schema_changes(region, (ColumnSpec("region", "category", False, ("n",)),)) \
        == ("column 'region': categories ['n', 's'] -> ['n']",)


def test_a_refusal_lists_every_failed_judgement_once_with_its_fixes():
    failed = (promotion.Judgement("gate", False, ("auc = 0.5, needs >= 0.9",), "improve it"),
              promotion.Judgement("schema", True),
              promotion.Judgement("data", False, ("3 rows fail",), "improve it"))
    error = promotion.refusal("m:v2", "m:v1", failed)
    assert error.exit_code == 3
    assert str(error).splitlines() == [
        "m:v2 is not promoted; production stays m:v1:", "  - gate: auc = 0.5, needs >= 0.9",
        "  - data: 3 rows fail", "  how to fix: improve it"]
