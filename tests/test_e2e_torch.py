"""A PyTorch ``nn.Module`` written in the notebook (tests/notebooks/torch_module.ipynb):
built, served, and answering as the notebook did, with its learned tensors captured."""

import importlib.metadata as md

import pytest

torch = pytest.importorskip("torch")  # CI installs it with the dev extra (pinned, CPU)

import httpx  # noqa: E402
from conftest import NOTEBOOKS, built  # noqa: E402

from nb2prod.authoring.proof import same  # noqa: E402
from nb2prod.runtime.loading import load_version, load_version_parts  # noqa: E402
from nb2prod.serve import serving  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NOTEBOOK = NOTEBOOKS / "torch_module.ipynb"
LEARNED = {"FEATURES", "feature_means", "feature_stds", "vibration_alarm", "temperature_alarm"}


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "torch_module"
    manifest = built(NOTEBOOK, out)
    contract, path = load_version(manifest["model_tag"])
    with serving(manifest["bento_tag"]) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, contract, path, out


def test_the_service_gives_the_notebooks_answers_for_the_examples(failures):
    client, contract, _, _ = failures
    r = client.post("/predict", json={"records": list(contract.examples)})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == len(contract.expected) == 5
    for i, (want, have) in enumerate(zip(contract.expected, got)):
        assert same(want, have), f"example {i}: notebook said {want}, service said {have}"
    assert {p["source"] for p in got} == {"model"}
    assert {p["prediction"]["failure"] for p in got} == {True, False}  # not one constant answer


def test_the_network_class_is_exported_and_the_model_is_one_of_it(failures):
    _, contract, path, out = failures
    code = (out / "torch_module_code.py").read_text()
    assert "class RiskNet(nn.Module):" in code
    assert "def standardise(" in code  # the model function's helper comes along
    module, model = load_version_parts(path, contract)
    assert type(model) is module.RiskNet and not model.training  # saved after net.eval()


def test_the_learned_tensors_are_captured_values_not_source(failures):
    client, contract, path, out = failures
    facts = {v["name"]: v for v in contract.captured}
    assert set(facts) == LEARNED
    assert facts["feature_means"]["type"] == facts["feature_stds"]["type"] == "torch.Tensor (6,)"
    assert {v["name"] for v in client.get("/model").json()["captured"]} == LEARNED
    code = (out / "torch_module_code.py").read_text()
    assert not any(f"{name} =" in code for name in LEARNED)
    module, _ = load_version_parts(path, contract)
    assert isinstance(module.feature_means, torch.Tensor) and module.feature_means.shape == (6,)
    assert (module.feature_stds > 0).all()


def test_the_bento_pins_torch(failures):
    _, _, _, out = failures
    installed = md.version("torch")
    assert installed.split("+")[0] == "2.13.0"  # the dev extra's pin: a CPU build
    lines = [line.strip() for line in (out / "bentofile.yaml").read_text().splitlines()]
    assert "- torch==2.13.0" in lines  # the release: "+cpu" is on no package index
