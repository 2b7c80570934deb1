"""The flagship built into a real bento, served by ``bentoml serve``, called over HTTP."""

import hashlib
import json
import math
import subprocess
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
from conftest import FLAGSHIP, NB2PROD

from nb2prod import serve as servers
from nb2prod.runtime.answers import DriftReport, ModelInfo, Predictions
from nb2prod.runtime.endpoints import APIS, ENDPOINTS
from nb2prod.runtime.loading import ARTIFACT, load_version

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def build(notebook: Path, out: Path) -> dict:
    proc = subprocess.run([*NB2PROD, "build", str(notebook), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "nb2prod.json").read_text())


@pytest.fixture(scope="module")
def flagship(flagship_build):
    manifest = flagship_build
    with servers.serving(manifest["bento_tag"]) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield manifest, client


def examples(manifest):
    return load_version(manifest["model_tag"])[0]


def close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def test_a_valid_batch_gets_the_notebooks_answers(flagship):
    manifest, client = flagship
    contract = examples(manifest)
    r = client.post("/predict", json={"records": list(contract.examples)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == manifest["model_tag"] and len(body["request_id"]) == 32
    assert len(body["predictions"]) == 5
    assert all(close(w, h) for w, h in zip(contract.expected, body["predictions"]))
    assert {p["source"] for p in body["predictions"]} == {"model"}


def test_an_invalid_record_is_a_400_naming_row_column_and_problem(flagship):
    manifest, client = flagship
    good = dict(examples(manifest).examples[0])
    bad = {**good, "mean radius": "large"}
    del bad["worst area"]
    r = client.post("/predict", json={"records": [good, bad]})
    assert r.status_code == 400
    detail = {tuple(d["loc"]): d["msg"] for d in r.json()["detail"]}
    assert set(detail) == {("records", 1, "mean radius"), ("records", 1, "worst area")}
    assert "valid number" in detail[("records", 1, "mean radius")]
    assert detail[("records", 1, "worst area")] == "Field required"


def test_a_guardrail_failure_is_answered_by_the_fallback(flagship):
    manifest, client = flagship
    contract, path = load_version(manifest["model_tag"])
    benign = next(e for e, x in zip(contract.examples, contract.expected)
                  if x["prediction"]["diagnosis"] == "benign")
    huge = {**benign, "worst radius": 25.0}
    # precondition: the model itself calls this very large mass benign
    model = joblib.load(path / ARTIFACT)
    assert model.predict_proba(pd.DataFrame([huge]))[0, 1] < 0.5
    r = client.post("/predict", json={"records": [benign, huge]})
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["source"] == "model"
    assert second == {"prediction": {"diagnosis": "malignant", "probability_malignant": None},
                      "source": "fallback", "reason": "guardrail", "warnings": []}


def test_a_failed_check_is_a_422_listing_every_row(flagship):
    manifest, client = flagship
    good = dict(examples(manifest).examples[0])
    odd = {**good, "worst radius": good["mean radius"] - 1}
    r = client.post("/predict", json={"records": [odd, good, odd]})
    assert r.status_code == 422
    assert [(d["loc"], d["check"]) for d in r.json()["detail"]] == [
        (["records", 0], "worst_at_least_mean"), (["records", 2], "worst_at_least_mean")]


def test_the_flagship_contract_refuses_an_impossible_radius_naming_value_and_range(flagship):
    manifest, client = flagship
    good = dict(examples(manifest).examples[0])
    r = client.post("/predict", json={"records": [good, {**good, "mean radius": 75.0,
                                                          "worst radius": 80.0}]})
    assert r.status_code == 422, r.text
    [failure] = [d for d in r.json()["detail"] if d.get("column") == "mean radius"
                 and d["expected"] == "between 0 and 60"]
    assert failure["loc"] == ["records", 1, "mean radius"] and failure["value"] == 75.0


def test_get_model_reports_version_metrics_and_lineage(flagship):
    manifest, client = flagship
    info = client.get("/model").json()
    assert info["model_version"] == manifest["model_tag"]
    assert info["metrics"]["roc_auc"] > 0.95
    assert info["notebook_sha256"] == hashlib.sha256(FLAGSHIP.read_bytes()).hexdigest()
    assert info["built_at"] == manifest["built_at"]
    assert client.post("/model").status_code == 405


def test_docs_document_the_real_columns(flagship):
    _, client = flagship
    schemas = client.get("/docs.json").json()["components"]["schemas"]
    record = schemas["BreastCancerRecord"]
    assert len(record["required"]) == 30 and "mean radius" in record["properties"]
    assert record["additionalProperties"] is False


def test_docs_list_every_nb2prod_endpoint_and_its_answers_fit(flagship):
    manifest, client = flagship
    paths = client.get("/docs.json").json()["paths"]
    for e in (*ENDPOINTS, *APIS):
        answer = paths[e.path][e.method.lower()]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{e.response.__name__}"}
    ModelInfo.model_validate(client.get("/model").json())
    DriftReport.model_validate(client.get("/drift").json())
    records = list(examples(manifest).examples)
    Predictions.model_validate(client.post("/predict", json={"records": records}).json())


def test_a_model_that_raises_is_answered_by_the_fallback_over_http(fixture_nb, tmp_path):
    manifest = build(fixture_nb("model_raises"), tmp_path / "model_raises")
    record = dict(load_version(manifest["model_tag"])[0].examples[0])
    record.update({"mean radius": 26.0, "worst radius": 27.0})  # the model raises above 25
    with servers.serving(manifest["bento_tag"]) as url:
        r = httpx.post(f"{url}/predict", json={"records": [record]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["reason"] == "error"
    assert r.json()["predictions"][0]["source"] == "fallback"


def test_a_tampered_model_file_refuses_to_start(flagship):
    manifest, _ = flagship
    artifact = load_version(manifest["model_tag"])[1] / ARTIFACT
    original = artifact.read_bytes()
    artifact.write_bytes(original + b"tampered")
    server = servers.Server(manifest["bento_tag"])
    try:
        with pytest.raises(RuntimeError) as e:
            server.wait_ready(timeout=60)
    finally:
        server.stop()
        artifact.write_bytes(original)
    assert "the model file was changed after the build" in str(e.value)
    assert "Traceback" not in str(e.value)
