import subprocess
import sys
import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import FLAGSHIP
from nb2prod.errors import ExportError, NotebookError
from nb2prod.extract import extract
from nb2prod.notebook import read


def notebook_of(tmp_path, *sources, name="scratch"):
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(textwrap.dedent(s)) for s in sources]), path)
    return read(path)


def test_flagship_exports_serving_code_and_nothing_that_loads_data_or_trains():
    exported = extract(read(FLAGSHIP))
    assert exported.marked == {"check": ["worst_at_least_mean"], "model": ["predict"],
                               "fallback": ["size_rule"], "guardrail": ["large_mass_not_benign"]}
    for absent in ("load_breast_cancer", "X_train", "train_test_split", ".fit(", "save_model"):
        assert absent not in exported.source
    assert "MALIGNANT_THRESHOLD = 0.5" in exported.source


def test_exported_module_imports_and_runs_on_its_own(tmp_path):
    (tmp_path / "bc_code.py").write_text(extract(read(FLAGSHIP)).source)
    script = textwrap.dedent("""
        import pandas as pd, bc_code
        from nb2prod.markers import collect
        marked = collect(vars(bc_code))
        X = pd.DataFrame({"worst radius": [25.0, 10.0], "worst concave points": [0.0, 0.0],
                          "mean radius": [20.0, 9.0]})
        print(list(marked.fallback(X)["diagnosis"]), [bool(v) for v in marked.checks[0](X)])
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "['malignant', 'benign'] [True, True]"


def test_helpers_are_followed_transitively_and_unused_code_is_left_out(tmp_path):
    nb = notebook_of(tmp_path, """
        import nb2prod as n2p
        import math, json
        SCALE = 2.0
        LIMITS = dict(low=0, high=SCALE * 10)
        def unused(): return 1
        class Clipper:
            def clip(self, v): return min(max(v, LIMITS["low"]), LIMITS["high"])
        def helper(v): return Clipper().clip(math.floor(v))
        @n2p.model
        def predict(model, X): return [helper(v) for v in X["a"]]
    """, "n2p.save_model('m', None, reference=None)")
    src = extract(nb).source
    for present in ("import math", "SCALE = 2.0", "LIMITS = dict", "class Clipper", "def helper"):
        assert present in src
    assert "def unused" not in src and "import json" not in src
    ns = {}
    exec(compile(src, "exported", "exec"), ns)
    import pandas as pd
    assert ns["predict"](None, pd.DataFrame({"a": [-3.5, 7.9, 99.0]})) == [0, 7, 20.0]


def test_data_dependent_global_fails_with_notebook_cell_line_and_fix():
    with pytest.raises(ExportError) as e:
        extract(read(FLAGSHIP.parent.parent / "tests/notebooks/data_global.ipynb"))
    message = str(e.value)
    assert "data_global.ipynb: cell 10, line 13: predict uses X_train, which cell 5 computes" in message
    assert "how to fix: pass it through the saved model" in message


def test_every_problem_is_reported_at_once(tmp_path):
    nb = notebook_of(tmp_path, """
        import nb2prod as n2p
        import pandas as pd
        df = pd.read_csv("x.csv")
        mean = df["a"].mean()
        @n2p.model
        def predict(model, X): return X["a"] - mean + undefined_thing
        n2p.save_model("m", None, reference=df)
    """)
    with pytest.raises(ExportError) as e:
        extract(nb)
    assert len(e.value.problems) == 2
    assert "mean, which cell 1 computes" in str(e.value)
    assert "undefined_thing, which no cell defines" in str(e.value)


def test_hidden_state_is_caught_before_anything_runs(fixture_nb):
    with pytest.raises(ExportError, match="predict uses CUTOFF, which no cell defines"):
        extract(read(fixture_nb("hidden_state")))


def test_shell_escapes_and_magics_are_never_exported(fixture_nb):
    src = extract(read(fixture_nb("shell_escape"))).source
    assert "pip" not in src and "%time" not in src
    compile(src, "exported", "exec")


@pytest.mark.parametrize("scenario, message", [
    ("no_model", "no @n2p.model function"),
    ("no_markers", "no nb2prod markers"),
    ("no_save_model", "never calls n2p.save_model"),
])
def test_incomplete_notebooks_say_what_is_required(fixture_nb, scenario, message):
    with pytest.raises(NotebookError, match=message) as e:
        extract(read(fixture_nb(scenario)))
    if scenario != "no_save_model":
        assert "@n2p.model\ndef predict(model, X):" in str(e.value)  # the smallest example


def test_syntax_error_is_located(tmp_path):
    nb = notebook_of(tmp_path, "x = 1", "def broken(:\n    pass")
    with pytest.raises(NotebookError, match=r"scratch.ipynb: cell 2, line 1: syntax error"):
        extract(nb)
