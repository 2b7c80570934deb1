"""A model that raises, hangs, returns NaN or the wrong number of rows costs its rows their
model answer and nothing more: the fallback answers every row, marked with the reason.

Each scenario is a fixture notebook (tests/notebooks/model_*.ipynb), the flagship with a
model function that misbehaves on any batch holding a mean radius above 25. The notebook's
code is extracted as a build extracts it, imported, and run by the served Predictor on
the flagship's model trained here; the hanging one also goes through a real build and a
real ``bentoml serve``.
"""

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import FLAGSHIP, NB2PROD, NOTEBOOKS
from process_tree import kill_tree
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nb2prod.build.extract import extract
from nb2prod.build.notebook import read
from nb2prod.checks.compiled import CompiledSuite
from nb2prod.core.markers import Marked, collect
from nb2prod.runtime.loading import code_module, load_version
from nb2prod.runtime.predict import Policy, Predictor
from nb2prod.serve import Server

DEADLINE = 0.5  # seconds: model_hangs' save_model(timeout_s=0.5)
MISBEHAVES = {"model_raises": "error", "model_hangs": "timeout",
              "model_returns_nan": "error", "model_wrong_rows": "error"}


@pytest.fixture(scope="module")
def trained():
    """The flagship's model and its held-out rows, trained as the notebook trains them."""
    data = load_breast_cancer(as_frame=True)
    X_train, X_test, y_train, _ = train_test_split(
        data.data, 1 - data.target, test_size=0.25, random_state=42, stratify=1 - data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return model.fit(X_train, y_train), X_test.reset_index(drop=True)


def exported(notebook: Path, tmp_path: Path) -> Marked:
    """The marked functions of ``notebook``'s extracted code, imported as a build does."""
    path = tmp_path / f"{notebook.stem}_code.py"
    path.write_text(extract(read(notebook)).source)
    return collect(vars(code_module(path.read_text(), path.stem, str(path), None)))


def with_trigger(X: pd.DataFrame, row: int = 3) -> pd.DataFrame:
    """``X`` with one row whose radius (26 mm, allowed up to 60) sets the model off."""
    batch = X.copy()
    batch.loc[row, ["mean radius", "worst radius"]] = [26.0, 27.0]
    return batch


@pytest.mark.parametrize("scenario,reason", MISBEHAVES.items())
def test_a_misbehaving_model_leaves_every_row_to_the_fallback(scenario, reason, trained,
                                                              tmp_path):
    model, X = trained
    marked = exported(NOTEBOOKS / f"{scenario}.ipynb", tmp_path)
    predictor = Predictor(model, marked, policy=Policy(timeout_s=DEADLINE))
    calm = X.head(8)
    assert {a["source"] for a in predictor.predict(calm)} == {"model"}  # it works, until…
    batch = with_trigger(calm)
    started = time.perf_counter()
    answers = predictor.predict(batch)
    elapsed = time.perf_counter() - started
    assert [(a["source"], a["reason"]) for a in answers] == [("fallback", reason)] * len(batch)
    rule = marked.fallback(batch)
    assert [a["prediction"]["diagnosis"] for a in answers] == list(rule["diagnosis"])
    assert elapsed < DEADLINE + 0.25
    # the next request is not held up, even while a hanging call still sleeps
    started = time.perf_counter()
    assert {a["source"] for a in predictor.predict(calm)} == {"model"}
    assert time.perf_counter() - started < DEADLINE


def test_a_large_batch_of_warned_rows_is_checked_in_well_under_a_second(trained, tmp_path):
    """5,000 rows, each failing 12 warn-level ranges (the flagship's drafted suite warns the
    same way on out-of-range rows): listing the 60,000 warnings must stay cheap, or a
    maximal request (10,000 rows) runs into BentoML's 30 s traffic timeout (a 504)."""
    model, X = trained
    columns = list(X.columns[:12])
    suite = {"name": "warned", "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": c, "min_value": 1e6, "max_value": 2e6},
         "meta": {"nb2prod": {"severity": "warn"}}} for c in columns]}
    predictor = Predictor(model, exported(FLAGSHIP, tmp_path), CompiledSuite(suite))
    batch = pd.DataFrame(np.resize(X.to_numpy(), (5000, X.shape[1])), columns=X.columns)
    started = time.perf_counter()
    found = predictor.inspect(batch)
    elapsed = time.perf_counter() - started
    assert len(found.failures) == 5000 * 12 and not found.rejected
    assert elapsed < 1.5, f"inspect() took {elapsed:.1f}s for 60,000 warnings"


# -- over HTTP: a real build of model_hangs, served ----------------------------------------

@pytest.fixture(scope="module")
def hanging(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "model_hangs"
    proc = subprocess.run([*NB2PROD, "build", str(NOTEBOOKS / "model_hangs.ipynb"),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "nb2prod.json").read_text())
    cwd = tmp_path_factory.mktemp("serve")
    server = Server(manifest["bento_tag"], cwd=cwd, log=cwd / "server.log")
    try:
        server.wait_ready()
        yield manifest, server
    finally:
        kill_tree(server)  # a graceful stop would wait for the sleeping model call to end


@pytest.mark.slow
@pytest.mark.e2e
def test_a_hanging_model_costs_one_deadline_over_http(hanging):
    manifest, server = hanging
    contract = load_version(manifest["model_tag"])[0]
    assert contract.timeout_s == DEADLINE
    examples = [dict(e) for e in contract.examples]
    batch = examples + [{**examples[0], "mean radius": 26.0, "worst radius": 27.0}]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        warm = client.post("/predict", json={"records": examples})
        started = time.perf_counter()
        hung = client.post("/predict", json={"records": batch})
        hung_s = time.perf_counter() - started
        started = time.perf_counter()
        after = client.post("/predict", json={"records": examples})
        after_s = time.perf_counter() - started
    assert {p["source"] for p in warm.json()["predictions"]} == {"model"}, warm.text
    assert hung.status_code == 200, hung.text
    assert [(p["source"], p["reason"]) for p in hung.json()["predictions"]] == \
        [("fallback", "timeout")] * len(batch)
    assert DEADLINE <= hung_s <= DEADLINE + 0.05, f"answered in {hung_s * 1000:.0f} ms"
    # the model is still asleep on the first call; the next request does not wait for it
    assert after.status_code == 200 and after_s < DEADLINE, f"{after_s * 1000:.0f} ms"
    assert {p["source"] for p in after.json()["predictions"]} == {"model"}, after.text
