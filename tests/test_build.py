"""``nb2prod build`` as a user runs it: a subprocess, its output and exit code."""

import json
import os
import subprocess

import httpx
import pytest
from conftest import FLAGSHIP, NB2PROD, NOTEBOOKS, nb2prod

from nb2prod.build import packaging, testing
from nb2prod.runtime import registry
from nb2prod.serve import Server, serving


def assert_clean_failure(proc, code=1):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_missing_path_is_one_line_and_exit_2(tmp_path):
    proc = nb2prod("build", tmp_path / "nope.ipynb")
    assert_clean_failure(proc, 2)
    assert proc.stderr.strip().splitlines()[0] == f"error: no such file: {tmp_path / 'nope.ipynb'}"


def test_not_a_notebook_and_invalid_json_exit_2(tmp_path):
    (tmp_path / "train.py").write_text("x = 1")
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert "is not a notebook" in nb2prod("build", tmp_path / "train.py").stderr
    proc = nb2prod("build", tmp_path / "broken.ipynb")
    assert_clean_failure(proc, 2)
    assert "is not valid notebook JSON" in proc.stderr


def test_no_markers_names_what_is_required_with_the_smallest_example(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("no_markers"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "no nb2prod markers" in proc.stderr and "@n2p.model" in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before anything was written


def test_parameters_without_a_parameters_cell_are_refused(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("no_parameters_tag"), "-p", "C", "0.5",
                   "--out", tmp_path / "out")
    assert_clean_failure(proc, 2)
    assert "no cell tagged 'parameters'" in proc.stderr and "would be overwritten" in proc.stderr


def test_unknown_parameters_are_refused_before_a_kernel_runs(tmp_path):
    proc = nb2prod("build", FLAGSHIP, "-p", "typo", "3", "--out", tmp_path / "out")
    assert_clean_failure(proc, 2)
    assert "unknown parameter(s) typo" in proc.stderr
    assert "C, test_size, random_state, min_roc_auc, data_path" in proc.stderr  # the valid ones
    assert "breast_cancer.ipynb: cell 3" in proc.stderr  # where they are set
    assert "[3/7]" not in proc.stdout and not (tmp_path / "out").exists()  # no kernel ran


def test_a_parameter_of_the_wrong_type_is_refused_by_build_too(tmp_path):
    proc = nb2prod("build", FLAGSHIP, "-p", "C", "strong", "--out", tmp_path / "out")
    assert_clean_failure(proc, 2)
    assert "-p C 'strong' is a str" in proc.stderr and "sets C = 1.0, a float" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_stray_arguments_are_refused(tmp_path):
    proc = nb2prod("build", FLAGSHIP, "-p", "C")
    assert_clean_failure(proc, 2)
    assert "-p NAME VALUE" in proc.stderr


@pytest.mark.slow
def test_a_cell_that_raises_names_the_cell_and_the_error(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("cell_raises"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "cell_raises.ipynb: cell 8: the notebook raised ValueError: training diverged" \
        in proc.stderr
    assert (tmp_path / "out" / "executed.ipynb").exists()  # evidence kept for debugging


@pytest.mark.slow
def test_gate_not_met_names_metric_value_and_threshold(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("gate_not_met"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "does not meet its gate: roc_auc = 0.99" in proc.stderr
    assert "needs >= 0.999" in proc.stderr


def test_debug_shows_the_traceback(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("no_model"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.slow
def test_parameters_override_the_notebook_and_are_recorded(tmp_path):
    out = tmp_path / "out"
    proc = nb2prod("build", FLAGSHIP, "--out", out, "-p", "C", "0.5", "-p", "min_roc_auc", "0.9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert manifest["parameters"] == {"C": 0.5, "min_roc_auc": 0.9}
    assert manifest["gate"][0]["threshold"] == ">= 0.9"
    for stage in range(1, 8):
        assert f"[{stage}/7]" in proc.stdout
    assert f"serve it with:  bentoml serve {manifest['bento_tag']}" in proc.stdout
    for name in ("service.py", "breast_cancer_code.py", "bentofile.yaml", "tests/test_service.py",
                 "executed.ipynb"):
        assert (out / name).exists(), name
    bentofile = (out / "bentofile.yaml").read_text()
    assert "lock_packages: false" in bentofile
    # pinned: the audit log's database layer, and what `nb2prod retrain` needs in the image
    for pin in ("sqlalchemy==", "psycopg[binary]==", "papermill==", "great-expectations==",
                "scikit-learn=="):
        assert f"    - {pin}" in bentofile, pin
    assert len((out / "service.py").read_text().splitlines()) < 40  # generated code is thin


@pytest.mark.slow
def test_reference_data_failing_a_reject_check_stops_the_build_with_a_report(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("reference_fails_checks"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "the reference data fails reject-level checks" in proc.stderr
    assert "expect_column_values_to_be_between(mean radius)" in proc.stderr
    assert "5 of 426 row(s) fail" in proc.stderr and "expected between 0 and 25" in proc.stderr
    assert (tmp_path / "out" / "validation.html").exists()


# --- a PII column, and the first build of a name (pii_hashed.ipynb, built twice) ----------

@pytest.fixture(scope="module")
def pii_builds(tmp_path_factory):
    """pii_hashed built twice without a PII salt: [(process, manifest)] for each build."""
    assert registry.production("pii_hashed") is None  # no build of this name before
    env = {k: v for k, v in os.environ.items() if k != "NB2PROD_PII_SALT"}
    builds = []
    for n in (1, 2):
        out = tmp_path_factory.mktemp(f"pii{n}") / "pii_hashed"
        proc = subprocess.run([*NB2PROD, "build", str(NOTEBOOKS / "pii_hashed.ipynb"), "--out",
                               str(out)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        builds.append((proc, json.loads((out / "nb2prod.json").read_text()), out))
    return builds


@pytest.mark.slow
def test_a_notebook_hashing_pii_builds_without_a_salt_and_says_serving_needs_one(pii_builds):
    proc, manifest, _ = pii_builds[0]
    assert ("serving needs: NB2PROD_PII_SALT (16+ characters, the same on every worker; "
            "pii hashing of mean radius)") in proc.stdout
    assert "optional: NB2PROD_ADMIN_TOKEN" in proc.stdout
    assert proc.stdout.rstrip().endswith(f"serve it with:  bentoml serve {manifest['bento_tag']}")


@pytest.mark.slow
def test_nb2prod_test_runs_a_pii_builds_tests_without_a_salt(pii_builds, monkeypatch):
    monkeypatch.delenv("NB2PROD_PII_SALT", raising=False)
    part = testing.run_service_tests(pii_builds[0][2], echo=lambda line: None)
    assert part.returncode == 0 and part.passed >= 3, part.output


@pytest.mark.slow
def test_the_first_build_of_a_name_is_production_and_later_ones_candidates(pii_builds):
    (first, one, out), (second, two, _) = pii_builds
    moves = registry.read("pii_hashed").history
    assert len(moves) == 1  # the second build moved nothing
    move = moves[0]
    assert (move.version, move.reason, move.bento) == (one["model_tag"], "first build",
                                                       one["bento_tag"])
    assert move.code_sha256 == packaging.code_sha256(out)
    assert move.artifact_sha256 == one["model_sha256"]
    assert f"{one['model_tag']} is production of pii_hashed (first build)" in first.stdout
    version = two["model_tag"].split(":", 1)[1]
    assert f"production of pii_hashed stays {one['model_tag']}" in second.stdout
    assert f"promote it with:  nb2prod promote pii_hashed {version}" in second.stdout
    listed = nb2prod("models", "pii_hashed", "--json")
    status = {row["version"]: row["status"] for row in json.loads(listed.stdout)}
    assert status == {one["model_tag"]: "production", two["model_tag"]: "candidate"}


@pytest.mark.slow
@pytest.mark.e2e
def test_serving_pii_needs_the_salt_and_reloads_the_first_build_as_production(pii_builds):
    _, manifest, _ = pii_builds[0]
    env = {k: v for k, v in os.environ.items() if k != "NB2PROD_PII_SALT"}
    server = Server(manifest["bento_tag"], env=env)
    with pytest.raises(RuntimeError) as refused:
        server.wait_ready(timeout=60)
    server.stop()
    said = [line for line in str(refused.value).splitlines() if "nb2prod" in line]
    assert len(said) == 1, str(refused.value)  # one line: what, and how to fix it
    assert "cannot serve PiiHashed" in said[0] and "the salt is missing" in said[0]
    assert "how to fix: set NB2PROD_PII_SALT" in said[0]
    assert "Traceback" not in str(refused.value)
    env.update(NB2PROD_PII_SALT="a-salt-of-sixteen+", NB2PROD_ADMIN_TOKEN="token-of-the-test")
    with serving(manifest["bento_tag"], env=env) as url:
        r = httpx.post(f"{url}/admin/reload", timeout=30,
                       headers={"authorization": "Bearer token-of-the-test"})
    assert r.status_code == 200, r.text
    assert r.json()["reloaded"] is False and "already production" in r.json()["message"]
