"""A LightGBM model on pandas categoricals (tests/notebooks/lightgbm_categorical.ipynb):
built, served, and asked about a channel training never had."""

import json
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
import yaml
from conftest import NOTEBOOKS, built

from nb2prod.authoring.proof import same
from nb2prod.runtime.loading import load_version
from nb2prod.serve import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NOTEBOOK = NOTEBOOKS / "lightgbm_categorical.ipynb"


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "lightgbm_categorical"
    manifest = built(NOTEBOOK, out)
    contract, path = load_version(manifest["model_tag"])
    with serving(manifest["bento_tag"]) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, contract, path, out


def test_the_bento_pins_lightgbm_and_the_contract_keeps_the_categories(churn):
    _, contract, _, out = churn
    assert any(line.strip().startswith("- lightgbm==")
               for line in (out / "bentofile.yaml").read_text().splitlines())
    columns = {c.name: c for c in contract.columns}
    assert (columns["channel"].dtype, columns["channel"].categories) == (
        "category", ("web", "store", "phone"))
    assert columns["region"].categories == ("east", "north", "south", "west")


def test_the_service_gives_the_notebooks_answers_for_the_examples(churn):
    client, contract, _, _ = churn
    r = client.post("/predict", json={"records": list(contract.examples)})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == len(contract.expected) == 5
    for i, (want, have) in enumerate(zip(contract.expected, got)):
        assert same(want, have), f"example {i}: notebook said {want}, service said {have}"
    assert {p["source"] for p in got} == {"model"}


def test_an_unseen_channel_is_answered_by_the_model_with_a_warning(churn):
    client, contract, path, _ = churn
    known = dict(contract.examples[0])
    fax = {**known, "channel": "fax"}
    observed = client.get("/drift").json()["observed"]
    r = client.post("/predict", json={"records": [fax, known]})
    assert r.status_code == 200, r.text
    odd, plain = r.json()["predictions"]
    assert (odd["source"], odd["reason"], plain["warnings"]) == ("model", None, [])
    [warning] = odd["warnings"]
    assert (warning["column"], warning["value"], warning["check"]) == (
        "channel", "fax", "expect_column_values_to_be_in_set")
    # The model answered as for a missing channel, in the training categories.
    dtypes = {c.name: pd.CategoricalDtype(list(c.categories)) for c in contract.columns
              if c.dtype == "category"}
    model = joblib.load(path / "model.joblib")  # a booster: it refers to no notebook code
    X = pd.DataFrame([{**known, "channel": None}]).astype(dtypes)
    assert odd["prediction"]["probability"] == round(float(model.predict_proba(X)[0, 1]), 4)
    assert odd["prediction"] != plain["prediction"]  # and a missing channel matters here
    # drift monitoring counts "fax" in channel's other bin (a failure would skip the rows)
    assert client.get("/drift").json()["observed"] == observed + 2


def test_a_category_of_the_wrong_type_is_still_a_400(churn):
    client, contract, _, _ = churn
    known = dict(contract.examples[0])
    for bad in (7, ["web"], None):
        r = client.post("/predict", json={"records": [{**known, "channel": bad}]})
        assert r.status_code == 400, r.text
        assert any(d["loc"][-1] == "channel" for d in r.json()["detail"]), r.text


def _properties(node):
    """Every ``properties`` object in an OpenAPI document."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield node["properties"]
        for value in node.values():
            yield from _properties(value)
    elif isinstance(node, list):
        for value in node:
            yield from _properties(value)


def test_docs_json_documents_the_known_values_without_closing_the_set(churn):
    client, _, _, _ = churn
    docs = client.get("/docs.json").json()
    [record] = [p for p in _properties(docs) if "channel" in p and "support_calls" in p]
    channel = record["channel"]
    assert channel.get("type") == "string" and "enum" not in channel
    assert channel["examples"] == ["web", "store", "phone"]
    assert "known values: web, store, phone" in channel["description"]
    assert record["region"]["examples"] == ["east", "north", "south", "west"]


def _packages(bentofile: Path) -> list[str]:
    # bentoml build stores the bentofile in its own normalised layout: read it as YAML
    return sorted(yaml.safe_load(bentofile.read_text())["python"]["packages"])


def test_a_rebuild_for_promote_or_rollback_pins_what_the_build_pinned(churn):
    # The exported code never imports lightgbm (the model object does): a rebuild that
    # pinned only the code's imports made an image that cannot load the model.
    import bentoml

    from nb2prod.build import packaging

    _, contract, _, out = churn
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert "lightgbm" in manifest["imports"]
    bento, _ = packaging.rebuild(contract.name, manifest["model_tag"], noted=str(out))
    rebuilt = Path(bentoml.bentos.get(bento).path) / "src" / "bentofile.yaml"
    assert _packages(rebuilt) == _packages(out / "bentofile.yaml")
    assert any(p.startswith("lightgbm==") for p in _packages(rebuilt))
