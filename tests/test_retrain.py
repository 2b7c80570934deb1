"""``nb2prod retrain`` / ``promote`` / ``rollback`` / ``models`` as a user runs them.

One story, run once for the module (each notebook run costs seconds of kernel start and
Great Expectations import), in a real BentoML store:

1. a first retrain on little training data becomes the first production;
2. better data (all of it) beats it on the candidate's own holdout: promoted;
3. at once, four retrains that must each leave production alone: a worse model (little
   data again), data that fails production's checks, data without its label column
   (the notebook raises) and data with a column dropped (a schema change);
4. a rollback makes the first version production again, with a new bento;
5. promoting the version refused for its data is refused again without --force;
6. a service serving the better version reloads production (the first) under load.
"""

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import replace

import httpx
import pytest
from conftest import NB2PROD, NOTEBOOKS, nb2prod
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from nb2prod.build import packaging
from nb2prod.cli import app
from nb2prod.core.errors import BuildError
from nb2prod.lifecycle.retrain import fingerprint
from nb2prod.runtime import registry
from nb2prod.runtime.loading import load_version
from nb2prod.serve import serving

NOTEBOOK = NOTEBOOKS / "scores_champion.ipynb"
NAME = "scores_champion"


def quick(*args):
    """A command that starts no kernel, run in this process (the same app, its exit code)."""
    return CliRunner().invoke(app, list(map(str, args)))


def start(*args, cwd):
    return subprocess.Popen([*NB2PROD, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_data(folder):
    """The flagship's data in `nb2prod feedback export` form, and three broken variants."""
    data = load_breast_cancer(as_frame=True)
    full = data.data.assign(label=["benign" if t else "malignant" for t in data.target])
    full.to_csv(folder / "full.csv", index=False)
    broken = full.copy()
    broken.loc[:4, ["mean radius", "worst radius"]] = [70.0, 75.0]  # production: 0-60 mm
    broken.to_csv(folder / "out_of_range.csv", index=False)
    full.drop(columns="label").to_csv(folder / "no_label.csv", index=False)
    full.drop(columns="mean fractal dimension").to_csv(folder / "dropped.csv", index=False)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    work = tmp_path_factory.mktemp("retrain")
    write_data(work)
    s = {"work": work}
    s["first"] = nb2prod("retrain", NOTEBOOK, "-p", "test_size", 0.9, "--out", "runs/first",
                         "--reason", "first model", cwd=work)
    s["after_first"] = registry.production(NAME)
    s["better"] = nb2prod("retrain", NOTEBOOK, "--data", "full.csv", "--out", "runs/better",
                          "--json", cwd=work)
    s["after_better"] = registry.production(NAME)
    running = {
        "worse": start("retrain", NOTEBOOK, "--data", "full.csv", "-p", "test_size", 0.9,
                       "--out", "runs/worse", cwd=work),
        "failing": start("retrain", NOTEBOOK, "--data", "out_of_range.csv", "--out",
                         "runs/failing", "--json", cwd=work),
        "raising": start("retrain", NOTEBOOK, "--data", "no_label.csv", "--out", "runs/raising",
                         cwd=work),
        "schema": start("retrain", NOTEBOOK, "--data", "dropped.csv", "--out", "runs/schema",
                        cwd=work)}
    s.update({k: finish(p) for k, p in running.items()})
    s["after_four"] = registry.read(NAME)
    s["rollback"] = nb2prod("rollback", NAME, "--reason", "bad predictions", "--json", cwd=work)
    s["after_rollback"] = registry.read(NAME)
    return s


def report(story, run):
    return json.loads((story["work"] / "runs" / run / "report.json").read_text())


def ok(proc, code=0):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_a_first_retrain_becomes_production(story):
    ok(story["first"])
    first = report(story, "first")
    assert first["outcome"] == "promoted" and first["champion"] is None
    assert story["after_first"] == first["candidate"]
    for stage in range(1, 8):
        assert f"[{stage}/7]" in story["first"].stdout
    assert "not worse than production: no production yet" in story["first"].stdout


@pytest.mark.slow
def test_better_data_is_promoted_with_its_lineage(story):
    ok(story["better"])
    better = json.loads(story["better"].stdout)  # --json: stdout is the report alone
    assert better["outcome"] == "promoted" and story["after_better"] == better["candidate"]
    table = better["comparison"]
    assert table["production"] == story["after_first"]
    assert table["production_scored_on"] == "the candidate's holdout"
    auc = next(r for r in table["rows"] if r["metric"] == "roc_auc")
    assert auc["candidate"] > auc["production"]
    move = story["after_four"].history[1]
    assert (move.version, move.replaced, move.bento) == (better["candidate"],
                                                         story["after_first"], better["bento"])
    full = (story["work"] / "full.csv").read_bytes()
    assert move.data_sha256 == hashlib.sha256(full).hexdigest()
    assert move.parameters == {"data_path": str(story["work"] / "full.csv")}
    assert move.notebook_sha256 == hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    assert move.user and move.metrics["roc_auc"] == auc["candidate"]
    run = story["work"] / "runs" / "better"
    for kept in ("executed.ipynb", "report.md", "report.json", "champion.json",
                 "build/service.py", "build/nb2prod.json"):
        assert (run / kept).exists(), kept
    assert json.loads((run / "build" / "nb2prod.json").read_text())["bento_tag"] == better["bento"]
    assert "metric           candidate  production" in (run / "report.md").read_text()


@pytest.mark.slow
def test_a_worse_model_is_not_promoted(story):
    proc = ok(story["worse"], 3)
    assert "is not promoted; production stays " + story["after_better"] in proc.stderr
    assert "not worse than production: roc_auc" in proc.stderr and "worse by" in proc.stderr
    assert "--tolerance" in proc.stderr
    assert report(story, "worse")["outcome"] == "rejected"


@pytest.mark.slow
def test_data_failing_production_checks_is_aborted_with_the_report(story):
    proc = ok(story["failing"], 3)
    assert "data vs. production's checks: expect_column_values_to_be_between(mean radius)" \
        in proc.stderr and "expected between 0 and 60" in proc.stderr
    failing = json.loads(proc.stdout)
    assert failing["outcome"] == "rejected"
    from nb2prod.runtime.loading import load_version
    _, path = load_version(failing["candidate"])
    assert (path / "validation-production.html").exists()


@pytest.mark.slow
def test_a_notebook_that_raises_changes_nothing(story):
    proc = ok(story["raising"], 1)
    assert "the notebook raised KeyError: 'label'" in proc.stderr
    raising = report(story, "raising")
    assert raising["outcome"] == "failed" and raising["candidate"] is None
    assert "KeyError" in raising["error"]
    assert (story["work"] / "runs" / "raising" / "executed.ipynb").exists()


@pytest.mark.slow
def test_a_schema_change_is_rejected_with_the_differences(story):
    proc = ok(story["schema"], 3)
    assert "input schema: column 'mean fractal dimension' removed" in proc.stderr
    assert "nb2prod build" in proc.stderr


@pytest.mark.slow
def test_nothing_but_a_better_model_moved_production(story):
    after = story["after_four"]
    assert after.production.version == story["after_better"] and len(after.history) == 2
    statuses = {after.status(report(story, r)["candidate"]) for r in ("worse", "failing", "schema")}
    assert statuses == {"rejected"}


@pytest.mark.slow
def test_rollback_restores_the_previous_version_with_a_new_bento(story):
    proc = ok(story["rollback"])
    move = json.loads(proc.stdout)
    after = story["after_rollback"]
    assert after.production.version == story["after_first"] == move["version"]
    assert move["action"] == "rollback" and move["replaced"] == story["after_better"]
    assert move["reason"] == "bad predictions"
    first_bento = after.history[0].bento
    assert move["bento"] != first_bento  # rebuilt, not reused
    import bentoml
    src = bentoml.bentos.get(move["bento"]).path_of("src")
    assert json.loads(open(f"{src}/nb2prod.json").read())["model_tag"] == story["after_first"]


@pytest.mark.slow
def test_models_lists_every_version_with_its_status(story):
    result = quick("models", NAME, "--json")
    assert result.exit_code == 0, result.output
    status = {r["version"]: r["status"] for r in json.loads(result.output)}
    assert status[story["after_first"]] == "production"
    assert status[story["after_better"]] == "previous"
    assert status[report(story, "worse")["candidate"]] == "rejected"
    text = quick("models", NAME).output
    assert "rejected" in text and "not worse than production" in text


@pytest.mark.slow
def test_promoting_a_refused_version_needs_force(story):
    failing = report(story, "failing")["candidate"]
    result = quick("promote", NAME, failing.split(":")[1])
    assert result.exit_code == 3, result.output
    assert f"{failing} is not promoted" in result.output
    assert "data vs. production's checks" in result.output
    assert registry.production(NAME) == story["after_first"]


@pytest.mark.slow
def test_a_bento_whose_tests_fail_is_deleted_and_production_kept(story, tmp_path):
    import bentoml

    out = tmp_path / "build"
    shutil.copytree(story["work"] / "runs" / "better" / "build", out)
    (out / "tests" / "test_broken.py").write_text("def test_broken():\n"
                                                  "    assert False, 'the service broke'\n")
    before = {str(b.tag) for b in bentoml.bentos.list(NAME)}
    with pytest.raises(BuildError, match="the generated tests failed") as caught:
        packaging.package(out)
    assert "the service broke" in str(caught.value)
    assert {str(b.tag) for b in bentoml.bentos.list(NAME)} == before  # built, then deleted
    assert registry.production(NAME) == story["after_first"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_running_service_reloads_production_under_load_without_a_failed_request(story):
    """Serve the bento pinned to the better version while the registry says production is
    the first one (rolled back): POST /admin/reload switches 8 busy clients over."""
    better_bento = report(story, "better")["bento"]
    records = list(load_version(story["after_first"])[0].examples)[:2]
    env = {**os.environ, "NB2PROD_ADMIN_TOKEN": "reload-token-5678"}
    admin = {"authorization": "Bearer reload-token-5678"}
    with serving(better_bento, env=env) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/model").json()["model_version"] == story["after_better"]
        assert client.post("/admin/reload").status_code == 401  # no token, no reload
        answers, stop = [], threading.Event()

        def busy():
            with httpx.Client(base_url=url, timeout=30) as mine:
                while not stop.is_set():
                    r = mine.post("/predict", json={"records": records})
                    answers.append((r.status_code, r.json().get("model_version")))

        clients = [threading.Thread(target=busy) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(1.5)
        reload = client.post("/admin/reload", headers=admin)
        time.sleep(1.5)
        stop.set()
        for c in clients:
            c.join()
        assert reload.status_code == 200, reload.text
        answer = reload.json()
        workers = answer.pop("workers")  # one worker: this one
        assert [w["model_version"] for w in workers] == [story["after_first"]]
        assert answer == {"reloaded": True, "model_version": story["after_first"],
                          "previous": story["after_better"], "not_reloaded": []}
        assert {status for status, _ in answers} == {200}, "a request failed during the reload"
        served = [version for _, version in answers]
        assert served[0] == story["after_better"] and served[-1] == story["after_first"]
        assert len(answers) > 20
        assert client.get("/model").json()["model_version"] == story["after_first"]
        again = client.post("/admin/reload", headers=admin).json()
        assert again["reloaded"] is False and again["model_version"] == story["after_first"]

        # Production built from other code cannot be reloaded: deploy its bento instead.
        saved = registry.home(NAME) / registry.FILE
        kept = saved.read_bytes()
        try:
            registry.change(NAME, lambda r: replace(r, history=(*r.history[:-1], replace(
                r.history[-1], version=story["after_better"], code_sha256="0" * 64))))
            refused = client.post("/admin/reload", headers=admin)
        finally:
            saved.write_bytes(kept)
        assert refused.status_code == 409
        assert "other notebook code" in refused.json()["error"]
        assert "bentoml serve" in refused.json()["error"]
        assert client.get("/model").json()["model_version"] == story["after_first"]


def test_the_data_fingerprint_covers_a_folder_by_names_and_contents(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x\n1\n")
    first = fingerprint(tmp_path / "d")
    (tmp_path / "d" / "a.csv").write_text("x\n2\n")
    assert fingerprint(tmp_path / "d") != first
    assert fingerprint(tmp_path / "d" / "a.csv") == hashlib.sha256(b"x\n2\n").hexdigest()


# --- bad input: refused before any kernel starts --------------------------------------


def test_unknown_parameters_are_refused_with_the_notebooks_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = quick("retrain", NOTEBOOK, "-p", "learning_rate", 0.1)
    assert result.exit_code == 2, result.output
    assert "unknown parameter(s) learning_rate" in result.output
    assert "C, test_size, random_state, min_roc_auc, data_path" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_parameter_of_the_wrong_type_is_refused():
    result = quick("retrain", NOTEBOOK, "-p", "C", "strong")
    assert result.exit_code == 2, result.output
    assert "scores_champion.ipynb: cell 3, line 1: -p C 'strong' is a str" in result.output
    assert "sets C = 1.0, a float" in result.output


def test_data_for_a_notebook_without_a_data_parameter_is_refused(fixture_nb, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.csv").write_text("a\n1\n")
    result = quick("retrain", fixture_nb("no_data_parameter"), "--data", "new.csv")
    assert result.exit_code == 2, result.output
    assert "has no data parameter, so --data has nowhere to go" in result.output
    assert "# n2p: data" in result.output
    result = quick("retrain", NOTEBOOK, "--data", "missing.csv")
    assert result.exit_code == 2 and "no such data file: missing.csv" in result.output


def test_rollback_and_promote_without_production_are_clear_errors():
    result = quick("rollback", "nothing_here")
    assert result.exit_code == 2, result.output
    assert "nothing_here has no production version, so there is nothing to roll back" \
        in result.output
    result = quick("promote", "nothing_here", "v1")
    assert result.exit_code == 1, result.output
    assert "model nothing_here:v1 is not in the BentoML model store" in result.output
