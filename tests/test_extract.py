import subprocess
import sys
import textwrap

import nbformat
import pytest
from conftest import FLAGSHIP
from nbformat.v4 import new_code_cell, new_notebook

from nb2prod.build.extract import extract
from nb2prod.build.notebook import read
from nb2prod.core.errors import ExportError, NotebookError


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
        from nb2prod.core.markers import collect
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


def test_a_value_computed_from_data_is_captured_not_refused():
    exported = extract(read(FLAGSHIP.parent.parent / "tests/notebooks/data_global.ipynb"))
    assert exported.captured == {"X_train": "cell 5"}  # taken by value from the run
    assert "X_train =" not in exported.source and "train_test_split" not in exported.source


def test_literals_in_any_form_go_as_source_and_the_rest_is_captured(tmp_path):
    nb = notebook_of(tmp_path, """
        import re
        import nb2prod as n2p
        import pandas as pd
        MIN_LEN, MAX_LEN = 3, 40
        LOW = HIGH = -1.5
        (A, [B, C]) = 1, [2, 2 ** 10]
        NAMES = ("a", "b") + ("c",)
        LIMITS = {"low": -MIN_LEN, "high": MAX_LEN * 2, "set": frozenset({1, 2})}
        ORDER_ID = re.compile(r"ORD-\\d+")
        TWICE = MAX_LEN * len(NAMES)
        medians = pd.Series({"a": 1.0})
        counter = 0
        counter += 1
        @n2p.model
        def predict(model, X):
            return [MIN_LEN, MAX_LEN, LOW, HIGH, A, B, C, NAMES, LIMITS, ORDER_ID, TWICE,
                    medians, counter]
    """, "n2p.save_model('m', None, reference=None)")
    exported = extract(nb)
    for literal in ("MIN_LEN, MAX_LEN = 3, 40", "LOW = HIGH = -1.5", "(A, [B, C]) = 1, [2, 2 ** 10]",
                    'NAMES = ("a", "b") + ("c",)', "LIMITS = {"):
        assert literal in exported.source
    # calls, names of other values and re-bound names are taken by value from the run
    assert exported.captured == {"ORDER_ID": "cell 1", "TWICE": "cell 1", "medians": "cell 1",
                                 "counter": "cell 1"}
    ns = {"ORDER_ID": None, "TWICE": None, "medians": None, "counter": None}
    exec(compile(exported.source, "exported", "exec"), ns)
    assert ns["LIMITS"] == {"low": -3, "high": 80, "set": frozenset({1, 2})}


def test_an_export_cell_may_hold_values_computed_at_run_time(tmp_path):
    nb = notebook_of(tmp_path, """
        #| n2p: export
        import re
        PATTERN = re.compile("x+")
        def matches(s): return PATTERN.fullmatch(s) is not None
    """, """
        import nb2prod as n2p
        @n2p.model
        def predict(model, X): return X["s"].map(matches)
    """, "n2p.save_model('m', None, reference=None)")
    exported = extract(nb)
    assert exported.captured == {"PATTERN": "cell 1"}
    assert "def matches" in exported.source


def test_what_the_model_refers_to_is_exported_or_located(tmp_path):
    nb = notebook_of(tmp_path, """
        import nb2prod as n2p
        import numpy as np
        SHIFT = 1.0
        class AddOne:
            def transform(self, X): return np.asarray(X) + SHIFT
        Made = type("Made", (), {})
        @n2p.model
        def predict(model, X): return model.transform(X)
    """, "n2p.save_model('m', None, reference=None)")
    exported = extract(nb, refers_to=["AddOne"])
    assert "class AddOne" in exported.source and "SHIFT = 1.0" in exported.source
    with pytest.raises(ExportError) as e:
        extract(nb, refers_to=["Made", "Ghost"])
    assert len(e.value.problems) == 2
    assert "refers to Made from the notebook, but cell 1 makes it at run time" in str(e.value)
    assert "refers to Ghost from the notebook, but no cell a build runs defines it" in str(e.value)


def test_a_helper_named_like_an_import_is_located(tmp_path):
    nb = notebook_of(tmp_path, """
        import nb2prod as n2p
        from numpy import log
    """, """
        def log(v): return v
        @n2p.model
        def predict(model, X): return log(X)
    """, "n2p.save_model('m', None, reference=None)")
    with pytest.raises(ExportError, match=r"scratch.ipynb: cell 2, line 2: log is imported in "
                                          r"cell 1 and defined in cell 2"):
        extract(nb)


def test_every_problem_is_reported_at_once(tmp_path):
    nb = notebook_of(tmp_path, """
        import nb2prod as n2p
        import pandas as pd
        df = pd.read_csv("x.csv")
        mean = df["a"].mean()
        @n2p.model
        def predict(model, X): return X["a"] - mean + undefined_thing + missing_too
        n2p.save_model("m", None, reference=df)
    """)
    with pytest.raises(ExportError) as e:
        extract(nb)
    assert len(e.value.problems) == 2
    assert "undefined_thing, which no cell defines" in str(e.value)
    assert "missing_too, which no cell defines" in str(e.value)


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
