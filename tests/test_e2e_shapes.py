"""A notebook in the shape data scientists write, built and served for real: a pipeline
holding a class and a function written in the notebook, and a model and a fallback that
use what training learned (medians, a per-region lookup table)."""

import os
import pickle
import subprocess

import httpx
import pytest
from conftest import NB2PROD, NOTEBOOKS, built

from nb2prod.runtime.loading import CAPTURED, load_version
from nb2prod.serve import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
TOKEN = "shapes-admin-token-0123456789"


def build(scenario, out, *params):
    return built(NOTEBOOKS / f"{scenario}.ipynb", out, *params)


def lookup_of(tag):
    """The per-region table the version captured, as the notebook computed it."""
    _, path = load_version(tag)
    return pickle.loads(pickle.loads((path / CAPTURED).read_bytes())
                        ["values"]["default_rate_by_region"])


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "model_class_in_pipeline"
    manifest = build("model_class_in_pipeline", out)
    env = {**os.environ, "NB2PROD_ADMIN_TOKEN": TOKEN}
    with serving(manifest["bento_tag"], env=env) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        yield manifest, client, out


def test_the_pipelines_own_class_and_function_go_as_source(classes):
    _, _, out = classes
    code = (out / "model_class_in_pipeline_code.py").read_text()
    assert "class AgeBands(BaseEstimator, TransformerMixin):" in code
    assert "def add_calendar(X: pd.DataFrame)" in code
    assert "ColumnTransformer" not in code and ".fit(" not in code  # training stays behind


def test_a_pipeline_with_notebook_classes_answers_as_in_the_notebook(classes):
    manifest, client, _ = classes
    contract, _ = load_version(manifest["model_tag"])
    r = client.post("/predict", json={"records": list(contract.examples)})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [a["source"] for a in got] == ["model"] * len(got)
    assert [a["prediction"] for a in got] == [e["prediction"] for e in contract.expected]


def test_the_fallback_answers_from_the_captured_lookup_table(classes):
    manifest, client, _ = classes
    contract, _ = load_version(manifest["model_tag"])
    # a date the calendar function cannot read: the model raises, the fallback answers
    record = {**contract.examples[0], "signup": "not a date", "region": "south"}
    r = client.post("/predict", json={"records": [record]})
    assert r.status_code == 200, r.text
    answer = r.json()["predictions"][0]
    assert (answer["source"], answer["reason"]) == ("fallback", "error")
    assert answer["prediction"]["probability"] == lookup_of(manifest["model_tag"])["south"]
    info = client.get("/model").json()
    assert {v["name"] for v in info["captured"]} == {
        "default_rate_by_region", "overall_rate", "train_medians"}


def test_reload_swaps_the_model_and_its_values_together(classes, tmp_path):
    """A second version of the same code, trained on other data, has other learned values:
    after promote and reload the service answers with the new model and the new table.
    (Last in this module: it changes what the service serves.)"""
    first, client, _ = classes
    contract, _ = load_version(first["model_tag"])
    record = {**contract.examples[0], "region": "west", "signup": "never"}  # the fallback's
    before = client.post("/predict", json={"records": [record]}).json()["predictions"][0]
    second = build("model_class_in_pipeline", tmp_path / "v2", "-p", "seed", "6")
    table = lookup_of(second["model_tag"])
    assert table["west"] != lookup_of(first["model_tag"])["west"]
    promoted = subprocess.run([*NB2PROD, "promote", "model_class_in_pipeline",
                               second["model_tag"].split(":")[1], "--force"],
                              capture_output=True, text=True)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    r = client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["reloaded"], r.text
    after = client.post("/predict", json={"records": [record]}).json()
    assert after["model_version"] == second["model_tag"]
    answer = after["predictions"][0]
    assert answer["source"] == "fallback"
    assert answer["prediction"]["probability"] == table["west"]
    assert before["prediction"]["probability"] == lookup_of(first["model_tag"])["west"]
