"""``nb2prod init NAME``: a complete notebook that doctor finds ready, that never overwrites,
and that builds, passes ``nb2prod test`` and serves a prediction over HTTP."""

import json
import re

import bentoml
import httpx
import pytest
from conftest import nb2prod

from nb2prod.authoring.doctor import diagnose
from nb2prod.build.notebook import read
from nb2prod.serve import serving


def test_init_writes_a_notebook_doctor_finds_ready_and_a_readme(tmp_path):
    proc = nb2prod("init", "churn", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "wrote churn/churn.ipynb", "wrote churn/README.md",
        "next:  jupyter lab churn/churn.ipynb     (or: nb2prod build churn/churn.ipynb)"]
    notebook = tmp_path / "churn" / "churn.ipynb"
    report = diagnose(notebook)
    assert report.ready, [i for i in report.items if not i.ok]
    # everything but PII (iris has none, and the notebook says how to declare it)
    assert [i.name for i in report.items if not i.ok] == ["PII columns marked"]
    nb = read(notebook)
    assert nb.parameters_cell.python.startswith("C = 1.0")
    assert 'n2p.save_model("churn", model' in nb.cells[-1].source
    readme = (tmp_path / "churn" / "README.md").read_text()
    assert readme.startswith("## Churn\n")
    assert "nb2prod build churn.ipynb" in readme and "bentoml serve churn:latest" in readme


def test_init_dir_writes_where_asked(tmp_path):
    proc = nb2prod("init", "iris_here", "--dir", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "iris_here.ipynb"]


def test_init_never_overwrites_a_file(tmp_path):
    assert nb2prod("init", "churn", cwd=tmp_path).returncode == 0
    readme = tmp_path / "churn" / "README.md"
    readme.write_text("my own notes")
    proc = nb2prod("init", "churn", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: churn/churn.ipynb and churn/README.md already exist; nb2prod init never " \
           "overwrites a file\n  how to fix: choose another name, or another directory " \
           "with --dir DIR" in proc.stderr
    assert readme.read_text() == "my own notes"
    # one existing file is enough to refuse, and nothing is written then
    (tmp_path / "churn" / "churn.ipynb").unlink()
    proc = nb2prod("init", "churn", cwd=tmp_path)
    assert proc.returncode == 2 and "churn/README.md already exists;" in proc.stderr
    assert not (tmp_path / "churn" / "churn.ipynb").exists()


@pytest.mark.parametrize("name, suggestion", [("Churn-Model", "churn_model"),
                                              ("2fast", "model_2fast")])
def test_init_refuses_a_name_that_cannot_name_a_service(tmp_path, name, suggestion):
    proc = nb2prod("init", name, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"error: {name!r} cannot name a model and its service" in proc.stderr
    assert f"how to fix: e.g. nb2prod init {suggestion}" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.e2e
def test_the_scaffold_builds_passes_nb2prod_test_and_serves(tmp_path):
    assert nb2prod("init", "iris_start", cwd=tmp_path).returncode == 0
    folder = tmp_path / "iris_start"
    built = nb2prod("build", "iris_start.ipynb", cwd=folder)
    assert built.returncode == 0, built.stdout + built.stderr
    manifest = json.loads((folder / "build" / "iris_start" / "nb2prod.json").read_text())

    versions = len(bentoml.models.list("iris_start"))
    tested = nb2prod("test", "iris_start.ipynb", cwd=folder)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert re.search(r"notebook \(nbval\)  iris_start\.ipynb: \d+ passed, 0 failed", tested.stdout)
    assert re.search(r"service tests     build/iris_start/tests: \d+ passed, 0 failed",
                     tested.stdout)
    assert len(bentoml.models.list("iris_start")) == versions  # the test run's version is gone

    # the README's own example request
    readme = (folder / "README.md").read_text()
    body = json.loads(re.search(r"-d '(.*?)'", readme, re.S)[1])
    with serving(manifest["bento_tag"]) as url:
        r = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()["predictions"][0]
    assert answer["source"] == "model" and answer["prediction"]["species"] == "setosa"
    assert 0.5 < answer["prediction"]["confidence"] <= 1
