"""The served flagship's production runtime over HTTP: audit, feedback, review, drift,
admin auth and the request guard."""

import json
import os
import sqlite3
from pathlib import Path

import httpx
import pytest

from nb2prod.runtime import wire
from nb2prod.runtime.answers import DriftReport, FeedbackRecorded, Pending, Resolved
from nb2prod.runtime.audit.layout import records_of
from nb2prod.runtime.loading import load_version
from nb2prod.serve import Server, serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
TOKEN = "test-admin-token-1234"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(flagship_build, tmp_path_factory):
    db = tmp_path_factory.mktemp("audit") / "audit.db"
    env = {**os.environ, "NB2PROD_AUDIT_URL": f"sqlite:///{db}", "NB2PROD_ADMIN_TOKEN": TOKEN,
           "NB2PROD_MAX_BODY_BYTES": "200000"}
    examples = list(load_version(flagship_build["model_tag"])[0].examples)
    with serving(flagship_build["bento_tag"], env=env) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, examples, db


def test_every_answer_is_in_the_audit_log_before_the_client_sees_it(served):
    client, examples, db = served
    r = client.post("/predict", json={"records": examples[:3]})
    assert r.status_code == 200
    # the README's query, rows expanded from the request's JSON arrays
    rows = sqlite3.connect(db).execute(
        "SELECT o.key AS row, json_extract(o.value, '$.source') FROM nb2prod_audit a, "
        "json_each(a.output) o WHERE a.request_id = ? ORDER BY row",
        (r.json()["request_id"],)).fetchall()
    assert rows == [(0, "model"), (1, "model"), (2, "model")]


def test_feedback_joins_updates_and_shows_as_live_quality(served):
    client, examples, _ = served
    request_id = client.post("/predict", json={"records": examples[:1]}).json()["request_id"]
    predicted = client.post("/predict", json={"records": examples[:1]}).json()
    first = client.post("/feedback", json={"request_id": request_id, "label": "benign"})
    assert first.status_code == 200 and first.json()["new"] is True
    FeedbackRecorded.model_validate(first.json())
    label = predicted["predictions"][0]["prediction"]["diagnosis"]
    again = client.post("/feedback", json={"request_id": request_id, "label": label})
    assert again.json()["new"] is False  # a repeat replaces the earlier label
    quality = client.get("/model").json()["live_quality"]
    assert quality["metric"] == "accuracy" and quality["n"] >= 1 and quality["value"] is not None


@pytest.mark.parametrize("body, status", [
    ({"request_id": "no-such-request", "label": "benign"}, 404),
    ({"request_id": "x", "label": {"nested": 1}}, 400),
    ({"label": "benign"}, 400),
])
def test_bad_feedback_is_a_clear_4xx(served, body, status):
    client, _, _ = served
    r = client.post("/feedback", json=body)
    assert r.status_code == status and "error" in r.json()


def test_guardrail_rows_wait_in_the_review_queue_for_an_admin(served):
    client, examples, _ = served
    benign = next(e for e in examples if e["worst radius"] < 15)
    client.post("/predict", json={"records": [{**benign, "worst radius": 25.0}]})
    assert client.get("/admin/review").status_code == 401
    assert client.get("/admin/review", headers={"authorization": "Bearer wrong"}).status_code == 401
    queue = client.get("/admin/review", headers=ADMIN).json()
    Pending.model_validate(queue)  # what /docs.json says it is
    item = next(i for i in queue["pending"] if i["reason"] == "guardrail")
    ok = client.post(f"/admin/review/{item['id']}", json={"label": "malignant"}, headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["resolved"] is True
    Resolved.model_validate(ok.json())
    twice = client.post(f"/admin/review/{item['id']}", json={"label": "malignant"}, headers=ADMIN)
    assert twice.status_code == 409


def test_admin_endpoints_are_disabled_without_a_token(flagship_build):
    env = {k: v for k, v in os.environ.items() if k != "NB2PROD_ADMIN_TOKEN"}
    with serving(flagship_build["bento_tag"], env=env) as url:
        r = httpx.get(f"{url}/admin/review", headers=ADMIN)
    assert r.status_code == 404 and "set NB2PROD_ADMIN_TOKEN" in r.json()["error"]


def test_non_json_and_oversized_bodies_are_refused_before_parsing(served):
    client, examples, _ = served
    r = client.post("/predict", content=b"records=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    big = client.post("/predict", json={"records": examples * 200})
    assert big.status_code == 413 and "NB2PROD_MAX_BODY_BYTES" in big.json()["error"]


def test_input_types_are_strict_and_unknown_keys_refused(served):
    client, examples, db = served
    count = sqlite3.connect(db).execute("SELECT count(*) FROM nb2prod_audit").fetchone()[0]
    for body, where in [
        ({"records": [{**examples[0], "mean radius": True}]}, ["records", 0, "mean radius"]),
        ({"records": [{**examples[0], "mean radius": "14.2"}]}, ["records", 0, "mean radius"]),
        ({"records": examples[:1], "explain": True}, ["explain"]),
        ({"records": [{**examples[0], "colour": "red"}]}, ["records", 0, "colour"]),
    ]:
        r = client.post("/predict", json=body)
        assert r.status_code == 400 and r.json()["detail"][0]["loc"] == where, r.text
    answered = client.post("/predict", json={"records": examples[:1]}).json()
    r = client.post("/feedback", json={"request_id": answered["request_id"], "label": "benign",
                                       "row": 0, "by": "me"})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["by"]
    # refused requests are never audited: only the one answered request was added
    after = sqlite3.connect(db).execute("SELECT count(*) FROM nb2prod_audit").fetchone()[0]
    assert after == count + 1


def test_a_large_body_is_answered_audited_and_refused_as_small_ones_are(served):
    """Over ``wire.INLINE_BYTES`` an all-float body is decoded by ``rows.FloatBodies``
    into one array: the same answers, audit record and refusals as small bodies get."""
    client, examples, db = served
    records = examples * 20
    assert len(json.dumps({"records": records})) > wire.INLINE_BYTES
    big = client.post("/predict", json={"records": records})
    assert big.status_code == 200, big.text
    one_by_one = [client.post("/predict", json={"records": [r]}).json()["predictions"][0]
                  for r in examples]
    assert big.json()["predictions"] == one_by_one * 20
    [(stored, rows)] = sqlite3.connect(db).execute(
        "SELECT input, rows FROM nb2prod_audit WHERE request_id = ?",
        (big.json()["request_id"],)).fetchall()
    assert rows == len(records)
    assert records_of(json.loads(stored)) == [{k: float(v) for k, v in r.items()} for r in records]
    for value, kind in [(True, "float_type"), ("14.2", "float_type"), (None, "float_type")]:
        bad = client.post("/predict", json={"records": [*records[:-1],
                                                        {**records[-1], "mean radius": value}]})
        assert bad.status_code == 400, bad.text
        assert bad.json()["detail"] == [{"loc": ["records", len(records) - 1, "mean radius"],
                                         "type": kind, "msg": "Input should be a valid number",
                                         "value": value}]


def _requests_counted(text: str, code: int) -> float:
    """BentoML's own request counter for POST /predict with ``code``, from /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("bentoml_service_request_total{") and 'endpoint="/predict"' in line
        and f'http_response_code="{code}"' in line
    )


def test_bentoml_metrics_count_predictions_answered_in_front_of_its_stack(flagship_build,
                                                                         tmp_path):
    """On a server of its own: every ``bentoml serve`` empties
    ``$BENTOML_HOME/prometheus_multiproc_dir`` as it starts, so a server started later with
    the same home (another test here, or a replica) hides an earlier one's counters."""
    examples = list(load_version(flagship_build["model_tag"])[0].examples)
    env = {**os.environ, "NB2PROD_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}"}
    with serving(flagship_build["bento_tag"], env=env) as url, httpx.Client(base_url=url) as client:
        before = client.get("/metrics").text
        for _ in range(3):
            assert client.post("/predict", json={"records": examples[:1]}).status_code == 200
        assert client.post("/predict", json={"records": [{"x": 1}]}).status_code == 400
        after = client.get("/metrics").text
    assert _requests_counted(after, 200) - _requests_counted(before, 200) == 3
    assert _requests_counted(after, 400) - _requests_counted(before, 400) == 1
    assert 'bentoml_service_request_duration_seconds_count{endpoint="/predict"' in after


def test_drift_shows_the_feature_that_moved(served):
    client, examples, _ = served
    shifted = [{**e, "mean texture": e["mean texture"] * 1.6} for e in examples] * 120
    for start in range(0, len(shifted), 100):
        batch = {"records": shifted[start:start + 100]}
        assert client.post("/predict", json=batch).status_code == 200
    report = client.get("/drift").json()
    DriftReport.model_validate(report)
    assert report["status"] == "drift" and "mean texture" in report["drifting"]
    assert report["features"]["mean texture"]["psi"] > report["threshold"]
    assert 'feature="mean texture"' in client.get("/metrics").text


def test_no_response_carries_a_traceback_or_a_path(served):
    client, examples, _ = served
    for r in (client.post("/predict", json={"records": [{"x": 1}]}),
              client.post("/feedback", json={"request_id": "nope", "label": 1}),
              client.get("/admin/review")):
        assert "Traceback" not in r.text and "/site-packages/" not in r.text


def test_an_unreachable_audit_database_stops_the_service_at_start(flagship_build):
    env = {**os.environ, "NB2PROD_AUDIT_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test"}
    server = Server(flagship_build["bento_tag"], env=env)
    with pytest.raises(RuntimeError) as e:
        server.wait_ready(timeout=60)
    server.stop()
    assert "cannot open the audit database" in str(e.value)
    assert "Traceback" not in str(e.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_feedback_exports_as_a_data_set_for_retraining(served, tmp_path, suffix):
    import subprocess

    import pandas as pd
    from conftest import NB2PROD

    client, examples, db = served
    request_id = client.post("/predict", json={"records": examples[:2]}).json()["request_id"]
    for row, label in enumerate(["malignant", "benign"]):
        client.post("/feedback", json={"request_id": request_id, "label": label, "row": row})
    out = tmp_path / f"labelled{suffix}"
    proc = subprocess.run([*NB2PROD, "feedback", "export", "breast_cancer", "--out", str(out),
                           "--db", f"sqlite:///{db}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert "label" in data and "mean radius" in data and len(data) >= 2
    assert data["mean radius"].iloc[-2] == examples[0]["mean radius"]
    assert list(data["label"].iloc[-2:]) == ["malignant", "benign"]


def test_the_default_audit_database_is_the_models_own_and_export_finds_it(flagship_build,
                                                                          tmp_path):
    """Without NB2PROD_AUDIT_URL a served bento audits into $BENTOML_HOME/nb2prod/<name>/,
    not its own folder, and `feedback export NAME` reads it with no --db; the worker says
    where in its one start-up line."""
    import subprocess

    import pandas as pd
    from conftest import NB2PROD

    env = {k: v for k, v in os.environ.items()
           if k not in ("NB2PROD_AUDIT_URL", "NB2PROD_ADMIN_TOKEN")}
    examples = list(load_version(flagship_build["model_tag"])[0].examples)
    server = Server(flagship_build["bento_tag"], env=env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/predict", json={"records": examples[:1]}).json()
            r = client.post("/feedback", json={"request_id": answer["request_id"],
                                               "label": "malignant"})
            assert r.status_code == 200, r.text
    finally:
        output = server.stop()
        server.log.unlink(missing_ok=True)
    db = Path(os.environ["BENTOML_HOME"]) / "nb2prod" / "breast_cancer" / "audit.db"
    assert db.exists()
    said = [line for line in output.splitlines() if "nb2prod: serving" in line]
    assert len(said) == 1, output  # one worker, one line
    assert (f"nb2prod: serving {flagship_build['model_tag']}; audit log sqlite:///{db}; "
            "admin endpoints off (set NB2PROD_ADMIN_TOKEN to enable them); deadline 2s; drift on"
            ) in said[0]
    out = tmp_path / "labelled.csv"
    proc = subprocess.run([*NB2PROD, "feedback", "export", "breast_cancer", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = pd.read_csv(out)
    assert data["label"].iloc[-1] == "malignant"
    assert data["mean radius"].iloc[-1] == examples[0]["mean radius"]
