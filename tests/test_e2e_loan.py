"""The loan example (examples/loan_approval): built, served, every severity over HTTP."""

import json
import subprocess

import httpx
import pytest
from conftest import NB2PROD, ROOT

from nb2prod.runtime.loading import load_version
from nb2prod.serve import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NOTEBOOK = ROOT / "examples" / "loan_approval" / "loan_approval.ipynb"


@pytest.fixture(scope="module")
def loan(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "loan_approval"
    proc = subprocess.run([*NB2PROD, "build", str(NOTEBOOK), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "nb2prod.json").read_text())
    record = dict(load_version(manifest["model_tag"])[0].examples[0])
    record.update(income=52_000.0, employment_type="salaried", age=40, region="north")
    with serving(manifest["bento_tag"]) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield manifest, client, record, out


def test_the_build_validated_the_reference_and_wrote_a_report(loan):
    manifest, _, _, out = loan
    assert manifest["checks"] > 10 and manifest["unsupported_checks"] == []
    html = (out / "validation.html").read_text()
    assert "loan_amount" in html and "income" in html


def test_warn_fallback_and_clean_rows_in_one_batch(loan):
    _, client, ok, _ = loan
    rows = [ok, {**ok, "income": None}, {**ok, "income": 9_000_000.0}, {**ok, "region": "mars"}]
    r = client.post("/predict", json={"records": rows})
    assert r.status_code == 200, r.text
    clean, no_income, rich, mars = r.json()["predictions"]
    assert (clean["source"], clean["warnings"]) == ("model", [])
    assert (no_income["source"], no_income["reason"]) == ("fallback", "check")  # @n2p.check
    assert (mars["source"], mars["reason"]) == ("fallback", "check")  # suite, set to fallback
    assert rich["source"] == "model"
    [warning] = rich["warnings"]
    assert (warning["column"], warning["value"]) == ("income", 9_000_000.0)
    assert warning["check"] == "expect_column_values_to_be_between"


def test_every_reject_level_failure_is_listed_at_once(loan):
    _, client, ok, _ = loan
    r = client.post("/predict", json={"records": [{**ok, "age": 16},
                                                  {**ok, "loan_amount": 900_000.0}]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    by_check = {d["check"]: d for d in detail}
    assert by_check["adult"]["loc"] == ["records", 0]
    hand_added = by_check["expect_column_values_to_be_between"]
    assert hand_added["loc"] == ["records", 1, "loan_amount"]
    assert (hand_added["value"], hand_added["expected"]) == (900_000.0, "between 500 and 500000")


def test_a_value_the_schema_cannot_coerce_is_a_4xx_not_a_500(loan):
    _, client, ok, _ = loan
    for bad in ({**ok, "age": "forty"}, {**ok, "income": [1]}, {**ok, "region": 7}):
        r = client.post("/predict", json={"records": [bad]})
        assert r.status_code == 400, r.text


def test_metrics_count_check_failures_by_check_and_severity(loan):
    _, client, ok, _ = loan
    client.post("/predict", json={"records": [{**ok, "income": None}]})
    text = client.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("nb2prod_check_failures_total")]
    assert any('check="income_declared"' in ln and 'severity="fallback"' in ln for ln in lines)
