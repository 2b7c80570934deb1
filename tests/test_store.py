import json
import sys
import types

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import nb2prod as n2p
from nb2prod.core.errors import ModelStoreError, Nb2prodError, NotebookError
from nb2prod.runtime.loading import ARTIFACT, CONTRACT, load_model, load_version

X = pd.DataFrame({"age": [30, 40, 50, 60], "income": [1.0, None, 3.0, 4.0],
                  "region": pd.Categorical(["n", "s", "n", "s"]), "name": ["a", "b", "c", "d"]})
MODEL = LogisticRegression()


@pytest.fixture
def notebook_namespace(monkeypatch):
    """An interactive kernel's __main__, holding a marked model function."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec("import nb2prod as n2p\n@n2p.model\ndef predict(model, X):\n"
         "    return X['age'] * 2\n", main.__dict__)
    return main


def test_save_model_writes_artifact_and_contract_that_load_back(notebook_namespace, capsys):
    tag = n2p.save_model("people", MODEL, reference=X, metrics={"rmse": 50.0},
                         gate={"rmse": n2p.at_most(55.0)}, examples=X.head(2))
    contract, path = load_version(tag)
    assert [(c.name, c.dtype, c.nullable) for c in contract.columns] == [
        ("age", "integer", False), ("income", "float", True),
        ("region", "category", False), ("name", "string", False)]
    assert contract.columns[2].categories == ("n", "s")
    assert contract.gate_passed and contract.gate[0].threshold.direction == "at_most"
    assert contract.expected == (
        {"prediction": 60, "source": "model", "reason": None, "warnings": []},
        {"prediction": 80, "source": "model", "reason": None, "warnings": []})
    assert contract.examples[1]["income"] is None
    assert isinstance(load_model(path, contract.artifact_sha256), LogisticRegression)
    assert f"saved model {tag} (gate passed)" in capsys.readouterr().out


def test_a_failed_gate_is_recorded_and_said(notebook_namespace, capsys):
    tag = n2p.save_model("people", MODEL, reference=X, metrics={"auc": 0.7}, gate={"auc": 0.9})
    assert not load_version(tag)[0].gate_passed
    assert "gate FAILED: auc = 0.7, needs >= 0.9" in capsys.readouterr().out


def test_tampered_artifact_is_refused(notebook_namespace):
    contract, path = load_version(n2p.save_model("people", MODEL, reference=X))
    (path / ARTIFACT).write_bytes(b"not the model")
    with pytest.raises(ModelStoreError, match="model file was changed after the build"):
        load_model(path, contract.artifact_sha256)
    assert json.loads((path / CONTRACT).read_text())["artifact_sha256"] == contract.artifact_sha256


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="Bad Name"), "model name 'Bad Name' is not valid"),
    (dict(reference=[1, 2]), "needs a non-empty pandas DataFrame"),
    (dict(metrics={"a": 1}, gate={"auc": 0.9}), "the gate names 'auc' but metrics has no such key"),
    (dict(metrics={"auc": 1}, gate={"auc": "high"}), "is not a number or n2p.at_most"),
    (dict(examples=X[["age"]]), "examples lack column"),
])
def test_bad_arguments_say_what_and_how(notebook_namespace, kwargs, message):
    args = {"name": "people", "reference": X, **kwargs}
    with pytest.raises(Nb2prodError, match=message):
        n2p.save_model(args.pop("name"), MODEL, **args)


def test_save_model_without_a_model_function_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    with pytest.raises(NotebookError, match="found no @n2p.model function"):
        n2p.save_model("people", MODEL, reference=X)


def test_unknown_model_tag_is_a_clear_error():
    with pytest.raises(ModelStoreError, match="is not in the BentoML model store"):
        load_version("nothing_here:v1")


def suite_for(df):
    return n2p.expect(df).add({"type": "expect_column_values_to_be_between",
                               "kwargs": {"column": "age", "min_value": 0, "max_value": 55}})


def test_checks_are_stored_as_ge_json_and_the_reference_is_validated(notebook_namespace, capsys):
    import great_expectations as gx

    from nb2prod.checks.validation import REPORT_HTML, read
    from nb2prod.runtime.loading import SUITE

    tag = n2p.save_model("people", MODEL, reference=X, checks=suite_for(X))
    contract, path = load_version(tag)
    stored = json.loads((path / SUITE).read_text())
    plain = gx.ExpectationSuite(name=stored["name"], expectations=stored["expectations"],
                                meta=stored["meta"])  # plain GE takes the stored JSON as it is
    assert len(plain.expectations) == len(stored["expectations"])
    assert contract.checks == len(stored["expectations"])
    report = read(path)
    failed = [r for r in report["results"] if not r["success"]]
    assert [(r["column"], r["unexpected_count"], r["unexpected_values"]) for r in failed] == [
        ("age", 1, [60])]
    assert contract.validation["failed"]["reject"] == 1
    assert "age" in (path / REPORT_HTML).read_text()
    assert "reference data checked: failing: 1 reject" in capsys.readouterr().out


def test_a_suite_naming_a_column_the_reference_lacks_is_refused(notebook_namespace):
    suite = n2p.expect(X.assign(height=1.0))
    with pytest.raises(Nb2prodError, match="height"):
        n2p.save_model("people", MODEL, reference=X, checks=suite)


def test_malformed_suite_json_is_refused(notebook_namespace):
    with pytest.raises(Nb2prodError):
        n2p.save_model("people", MODEL, reference=X, checks={"expectations": [{"kwargs": {}}]})


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout_s=0), "timeout_s=0"), (dict(min_confidence=2), "must be in \\[0, 1\\]"),
    (dict(low_confidence="ask"), "low_confidence='ask'"),
    (dict(pii={"salary": "hash"}), "no such input column"),
    (dict(pii={"name": "encrypt"}), '"hash" or "drop"'),
])
def test_serving_options_are_checked_in_the_notebook(notebook_namespace, kwargs, message):
    with pytest.raises(Nb2prodError, match=message):
        n2p.save_model("people", MODEL, reference=X, **kwargs)


def test_serving_options_are_stored(notebook_namespace):
    tag = n2p.save_model("people", MODEL, reference=X, timeout_s=0.5, min_confidence=0.7,
                         low_confidence="review", pii={"name": "drop"}, cost_per_call=0.002)
    contract = load_version(tag)[0]
    assert (contract.timeout_s, contract.min_confidence, contract.low_confidence,
            contract.pii, contract.cost_per_call) == (0.5, 0.7, "review", {"name": "drop"}, 0.002)
