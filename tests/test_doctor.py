"""``nb2prod doctor`` as a user runs it: the checklist, its JSON, exit codes and ``--run``."""

import json
import subprocess

import bentoml
import nbformat
import pytest
from conftest import FLAGSHIP, NB2PROD, label_of
from nbformat.v4 import new_code_cell, new_notebook

from nb2prod.authoring.doctor import REQUIREMENTS, diagnose

STATIC = [r.name for r in REQUIREMENTS] + ["code exports cleanly"]


def doctor(*args):
    return subprocess.run([*NB2PROD, "doctor", *map(str, args)], capture_output=True, text=True)


def items_of(proc):
    return {item["name"]: item for item in json.loads(proc.stdout)["items"]}


def test_the_flagship_has_every_required_item_and_exits_0():
    proc = doctor(FLAGSHIP, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ready"] is True and report["ran"] is False
    items = items_of(proc)
    assert list(items) == STATIC
    assert all(item["ok"] for item in items.values() if item["required"])
    assert items["model marker"]["found"] == f"predict() in {label_of(FLAGSHIP, 'def predict')}"
    assert items["gate"]["found"] == \
        f"gate= in save_model ({label_of(FLAGSHIP, 'n2p.save_model(')}, line 1)"
    # advisory items may be missing without failing the notebook
    assert items["PII columns marked"] == {**items["PII columns marked"], "required": False,
                                           "ok": False}


def test_the_text_checklist_says_what_is_in_place():
    proc = doctor(FLAGSHIP)
    assert proc.returncode == 0
    assert "  [ok]        model marker            predict() in " in proc.stdout
    assert "  [advice]    timeout set" in proc.stdout
    assert proc.stdout.rstrip().endswith("every required item is in place")


def test_a_notebook_without_a_model_exits_1_and_says_what_to_add(fixture_nb):
    proc = doctor(fixture_nb("no_model"), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    items = items_of(proc)
    assert items["model marker"] == {
        "name": "model marker", "required": True, "ok": False, "found": "",
        "missing": "no @n2p.model function: the service has nothing to serve",
        "fix": "@n2p.model\ndef predict(model, X):\n    return model.predict(X)"}
    assert items["code exports cleanly"]["ok"] is None  # not checkable without a model
    assert json.loads(proc.stdout)["ready"] is False
    text = doctor(fixture_nb("no_model")).stdout
    assert "[missing]   model marker" in text and "fix: @n2p.model" in text
    assert "1 required item(s) missing: model marker" in text


def test_every_missing_item_is_listed_with_the_line_to_add(tmp_path):
    path = tmp_path / "bare.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(
        "import nb2prod as n2p\n@n2p.model\ndef predict(model, X):\n    return X\n"
        "n2p.save_model('bare', None)")]), path)
    report = diagnose(path)
    missing = {i.name: i.fix for i in report.items if i.required and i.ok is False}
    assert set(missing) == {"input checks", "fallback", "guardrail", "gate", "examples",
                            "drift reference"}
    assert missing["examples"] == "examples=X_test.head(5)  in n2p.save_model(...)"
    assert missing["fallback"].startswith("@n2p.fallback\ndef rules(X):")


def test_markers_in_any_spelling_count(fixture_nb):
    proc = doctor(fixture_nb("spelled_tags"), "--json")
    assert proc.returncode == 0, proc.stdout
    label = label_of(fixture_nb("spelled_tags"), "def size_rule")
    assert items_of(proc)["fallback"]["found"] == f"size_rule() in {label}"


def test_export_problems_are_an_item_not_a_crash(fixture_nb):
    proc = doctor(fixture_nb("hidden_state"), "--json")
    assert proc.returncode == 1
    item = items_of(proc)["code exports cleanly"]
    assert item["ok"] is False
    assert "predict uses CUTOFF, which no cell defines" in item["missing"]


def test_values_taken_from_the_run_are_named_with_their_cell(fixture_nb):
    proc = doctor(fixture_nb("data_global"), "--json")
    item = items_of(proc)["code exports cleanly"]
    assert item["ok"] is True
    assert "captured by value from the run: X_train (cell 5)" in item["found"]


def test_a_broken_notebook_is_an_error_not_a_checklist(tmp_path):
    path = tmp_path / "broken.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("def broken(:\n    pass")]), path)
    proc = doctor(path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: broken.ipynb: cell 1, line 1: syntax error" in proc.stderr
    assert doctor(tmp_path / "nope.ipynb").returncode == 2


@pytest.mark.slow
def test_run_reports_the_gate_and_leaves_the_model_store_as_it_was():
    before = len(bentoml.models.list())
    proc = doctor(FLAGSHIP, "--run", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    items = items_of(proc)
    assert list(items) == STATIC + ["runs in a fresh kernel", "gate passes", "examples answered"]
    assert items["runs in a fresh kernel"]["found"].startswith("ran in ")
    assert "save_model recorded breast_cancer:" in items["runs in a fresh kernel"]["found"]
    assert items["gate passes"]["ok"] is True
    assert items["gate passes"]["found"].startswith("roc_auc = 0.99")
    assert items["gate passes"]["found"].endswith("needs >= 0.95: passed")
    assert items["examples answered"]["found"].startswith("5 examples answered")
    assert len(bentoml.models.list()) == before


@pytest.mark.slow
def test_run_reports_a_failed_gate_as_missing(fixture_nb):
    proc = doctor(fixture_nb("gate_not_met"), "--run", "--json")
    assert proc.returncode == 1
    gate = items_of(proc)["gate passes"]
    assert gate["ok"] is False and "gate failed: roc_auc = 0.99" in gate["missing"]
    assert "needs >= 0.999" in gate["missing"]


@pytest.mark.slow
def test_run_reports_the_cell_that_raised(fixture_nb):
    proc = doctor(fixture_nb("cell_raises"), "--run", "--json")
    assert proc.returncode == 1
    ran = items_of(proc)["runs in a fresh kernel"]
    assert ran["missing"] == "cell_raises.ipynb: cell 8: the notebook raised ValueError: " \
                             "training diverged"
