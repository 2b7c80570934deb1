"""``nb2prod build`` as a user runs it: a subprocess, its output and exit code."""

import json
import subprocess


from conftest import FLAGSHIP, NB2PROD


def nb2prod(*args, cwd=None):
    return subprocess.run([*NB2PROD, *map(str, args)], capture_output=True, text=True, cwd=cwd)


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


def test_stray_arguments_are_refused(tmp_path):
    proc = nb2prod("build", FLAGSHIP, "-p", "C")
    assert_clean_failure(proc, 2)
    assert "-p NAME VALUE" in proc.stderr


def test_a_cell_that_raises_names_the_cell_and_the_error(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("cell_raises"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "cell_raises.ipynb: cell 8: the notebook raised ValueError: training diverged" \
        in proc.stderr
    assert (tmp_path / "out" / "executed.ipynb").exists()  # evidence kept for debugging


def test_gate_not_met_names_metric_value_and_threshold(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("gate_not_met"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "does not meet its gate: roc_auc = 0.99" in proc.stderr
    assert "needs >= 0.999" in proc.stderr


def test_debug_shows_the_traceback(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("no_model"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_parameters_override_the_notebook_and_are_recorded(tmp_path):
    out = tmp_path / "out"
    proc = nb2prod("build", FLAGSHIP, "--out", out, "-p", "C", "0.5", "-p", "min_roc_auc", "0.9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert manifest["parameters"] == {"C": 0.5, "min_roc_auc": 0.9}
    assert manifest["gate"][0]["threshold"] == ">= 0.9"
    for stage in range(1, 9):
        assert f"[{stage}/8]" in proc.stdout
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


def test_reference_data_failing_a_reject_check_stops_the_build_with_a_report(fixture_nb, tmp_path):
    proc = nb2prod("build", fixture_nb("reference_fails_checks"), "--out", tmp_path / "out")
    assert_clean_failure(proc)
    assert "the reference data fails reject-level checks" in proc.stderr
    assert "expect_column_values_to_be_between(mean radius)" in proc.stderr
    assert "5 of 426 row(s) fail" in proc.stderr and "expected between 0 and 25" in proc.stderr
    assert (tmp_path / "out" / "validation.html").exists()
