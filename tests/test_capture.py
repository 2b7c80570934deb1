"""What the service can use: constants built by calls and values the run computed, taken
by value; what cannot be taken, refused in the notebook, located, all at once."""

import json
import pickle
import re
import subprocess
import textwrap
from pathlib import Path

import bentoml
import pandas as pd
import pytest
from conftest import NB2PROD, NOTEBOOKS

from nb2prod.authoring import capture
from nb2prod.build.notebook import from_sources
from nb2prod.core.errors import ExportError
from nb2prod.runtime.loading import CAPTURED, code_module, load_version, pack

CELL = """
import re
import nb2prod as n2p
import pandas as pd
ORDER = re.compile("ORD-[0-9]+")
medians = pd.read_csv("train.csv").median()
@n2p.model
def predict(model, X):
    return X.fillna(medians).assign(ok=X["id"].map(lambda s: bool(ORDER.fullmatch(s))))
"""


def kernel(**values):
    """A notebook of one cell as a kernel's history has it, and its namespace."""
    nb = from_sources(Path("scratch.ipynb"), [("In [1]", textwrap.dedent(CELL)),
                                              ("In [2]", "n2p.save_model('m', None, reference=None)")])
    return nb, {"re": re, "pd": pd, "ORDER": re.compile("ORD-[0-9]+"), "medians": pd.Series({"v": 1.5}),
                **values}


def test_captured_values_are_pickled_with_their_facts_and_bound_into_the_code():
    nb, namespace = kernel()
    packed = capture.pack(nb, nb, namespace, model=None)
    assert {f["name"]: (f["type"], f["cell"]) for f in packed.facts} == {
        "ORDER": ("re.Pattern", "In [1]"), "medians": ("pandas.Series (1,)", "In [1]")}
    module = code_module(packed.exported.source, "scratch_code", "scratch_code.py",
                         pack(packed.values, packed.needs_code))
    X = pd.DataFrame({"id": ["ORD-1", "x"], "v": [None, 2.0]})
    out = module.predict(None, X)
    assert out["v"].tolist() == [1.5, 2.0] and out["ok"].tolist() == [True, False]


def test_a_module_bound_at_run_time_is_imported_by_the_name_the_run_found():
    nb = from_sources(Path("scratch.ipynb"), [("In [1]", textwrap.dedent("""
        import nb2prod as n2p
        try:
            import orjson_not_installed as fastjson
        except ImportError:
            import json as fastjson
        @n2p.model
        def predict(model, X):
            return [fastjson.dumps(v) for v in X]
    """)), ("In [2]", "n2p.save_model('m', None, reference=None)")])
    import json
    packed = capture.pack(nb, nb, {"fastjson": json}, model=None)
    assert "import json as fastjson" in packed.source and not packed.values
    module = code_module(packed.source, "scratch_code", "scratch_code.py", None)
    assert module.predict(None, [1, "a"]) == ["1", '"a"']


def test_a_value_pickle_refuses_is_located_with_the_way_out():
    nb, namespace = kernel(medians=lambda x: x)  # a lambda: pickle cannot save it
    with pytest.raises(ExportError) as e:
        capture.pack(nb, nb, namespace, model=None)
    assert "scratch.ipynb: In [1]: the service needs medians (function), which cannot be " \
           "pickled" in str(e.value)


def test_the_cap_counts_all_values_and_can_be_raised():
    nb, namespace = kernel(medians=pd.Series(range(50_000), dtype=float))
    with pytest.raises(ExportError, match=r"take 391.2 KiB, more than the 100.0 KiB cap: medians"):
        capture.pack(nb, nb, namespace, model=None, max_bytes=100 * 1024)
    assert capture.pack(nb, nb, namespace, model=None, max_bytes=1024 * 1024).values


def build(scenario, out):
    return subprocess.run([*NB2PROD, "build", str(NOTEBOOKS / f"{scenario}.ipynb"), "--out",
                           str(out)], capture_output=True, text=True)


def versions(name):
    try:
        return bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return []


@pytest.mark.slow
def test_constants_built_by_calls_are_captured_and_literals_go_as_source(tmp_path):
    out = tmp_path / "constants_by_call"
    proc = build("constants_by_call", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "nb2prod.json").read_text())
    captured = {v["name"]: v for v in manifest["captured"]}
    assert set(captured) == {"ORDER_ID", "SETTINGS", "default_rate_by_region", "overall_rate",
                             "train_medians"}
    assert captured["SETTINGS"]["type"] == "Thresholds (a notebook class)"
    assert captured["ORDER_ID"]["cell"] == "cell 9" and captured["train_medians"]["cell"] == "cell 5"
    assert "captured ORDER_ID (re.Pattern" in proc.stdout  # the build names each one
    code = (out / "constants_by_call_code.py").read_text()
    for source in ("MIN_LEN, MAX_LEN = 5, 12", "LOW, HIGH = -1.0, 2 ** 20",
                   "class Thresholds:", "def well_formed"):
        assert source in code
    assert "ORDER_ID =" not in code and "SETTINGS =" not in code and "X_train" not in code
    # the values are the run's, in the version, pinned
    contract, path = load_version(manifest["model_tag"])
    stored = pickle.loads((path / CAPTURED).read_bytes())
    assert stored["needs_code"] == ["SETTINGS"] and contract.captured_sha256


@pytest.mark.slow
def test_what_cannot_be_captured_is_refused_at_once_and_nothing_is_saved(tmp_path):
    proc = build("cannot_capture", tmp_path / "out")
    assert proc.returncode == 1
    message = proc.stdout + proc.stderr
    assert "4 problem(s)" in message and "Traceback" not in message
    assert "cannot_capture.ipynb: cell 10: the service needs lookup_db, which is a connection" in message
    assert "the service needs batches, which is a generator" in message
    assert "refers to Doubler from the notebook, but no cell a build runs defines it" in message
    assert "more than the 4.0 MiB cap: big_table (pandas.DataFrame (800, 800)" in message
    assert "max_captured_bytes" in message  # the way out
    assert versions("cannot_capture") == []


@pytest.mark.slow
def test_a_fallback_of_another_shape_is_refused_showing_both(tmp_path):
    proc = build("fallback_other_columns", tmp_path / "out")
    assert proc.returncode == 1
    message = proc.stdout + proc.stderr
    assert ("fallback_other_columns.ipynb: cell 10: the fallback size_rule() answers with "
            "columns ['diagnosis'], the model predict() with columns ['diagnosis', "
            "'probability_malignant']") in message
    assert versions("fallback_other_columns") == []


def test_a_helper_shadowing_an_import_fails_before_the_notebook_runs(tmp_path):
    proc = build("helper_shadows_import", tmp_path / "out")
    assert proc.returncode == 1
    assert ("helper_shadows_import.ipynb: cell 10, line 4: log is imported in cell 10 and "
            "defined in cell 10") in proc.stdout + proc.stderr
    assert "running the notebook" not in proc.stdout  # static: no kernel was spent on it


@pytest.mark.slow
def test_a_model_centring_input_by_training_medians_builds_with_the_notebooks_answers(tmp_path):
    out = tmp_path / "values_learned_from_data"
    proc = build("values_learned_from_data", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # its golden tests passed
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert {v["name"] for v in manifest["captured"]} == {
        "FEATURES", "train_medians", "default_rate_by_region", "overall_rate"}
    contract, _ = load_version(manifest["model_tag"])
    medians = {e["prediction"]["income_vs_median"] for e in contract.expected}
    assert len(medians) > 1  # a real, per-row answer that uses the captured medians


@pytest.mark.slow
def test_a_module_beside_the_notebook_goes_with_the_version(tmp_path):
    out = tmp_path / "local_helpers"
    proc = build("local_helpers", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # its tests ran without the file
    assert "with loan_features.py (beside the notebook)" in proc.stdout
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert manifest["modules"] == ["loan_features.py"]
    contract, path = load_version(manifest["model_tag"])
    assert (path / "modules" / "loan_features.py").read_bytes() == \
        (NOTEBOOKS / "loan_features.py").read_bytes()
    assert "class AgeBands" not in (out / "local_helpers_code.py").read_text()
