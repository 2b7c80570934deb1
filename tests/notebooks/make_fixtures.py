"""Regenerate the notebooks under notebooks/ and tests/notebooks/: ``python tests/notebooks/make_fixtures.py``.

Each fixture is the flagship with one thing changed, named by scenario, so a test that
uses it reads as the scenario it covers.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

IMPORTS = """\
import great_expectations.expectations as gxe
import nb2prod as n2p
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler"""

PARAMETERS = """\
C = 1.0              # inverse regularisation strength
test_size = 0.25
random_state = 42
min_roc_auc = 0.95   # evaluation gate: the build fails below this
data_path = None     # n2p: data (CSV: the inputs and a "label" column); None: scikit-learn's copy"""

DATA = """\
if data_path is None:
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, 1 - data.target  # sklearn codes malignant as 0; we predict malignant = 1
else:  # e.g. written by `nb2prod feedback export breast_cancer --out new.csv`
    X = pd.read_csv(data_path)
    y = (X.pop("label") == "malignant").astype(int)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=test_size, random_state=random_state, stratify=y)
X_train.shape, X_test.shape"""

EXPLORE = """\
# How balanced are the classes, and which features separate them best?
print(y_train.value_counts(normalize=True).round(3))
X_train.assign(malignant=y_train).corr()["malignant"].drop("malignant").abs().sort_values().tail(8)"""

EXPLORE2 = """\
X_train[["mean radius", "worst radius", "worst concave points"]].describe().T"""

TRAIN = """\
model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
model.fit(X_train, y_train)
proba = model.predict_proba(X_test)[:, 1]
scores = {"roc_auc": roc_auc_score(y_test, proba),
          "accuracy": accuracy_score(y_test, proba >= 0.5)}
scores"""

SERVING = """\
MALIGNANT_THRESHOLD = 0.5
LARGE_MASS_RADIUS = 20.0  # mm; no benign case in the data is this large


@n2p.check
def worst_at_least_mean(X: pd.DataFrame) -> pd.Series:
    \"\"\""worst" is the mean of the three largest cells, so it cannot be below the mean.\"\"\"
    return X["worst radius"].to_numpy() >= X["mean radius"].to_numpy()


@n2p.model
def predict(model, X: pd.DataFrame) -> pd.DataFrame:
    p = model.predict_proba(X)[:, 1]
    return pd.DataFrame({
        "diagnosis": np.where(p >= MALIGNANT_THRESHOLD, "malignant", "benign"),
        "probability_malignant": p.round(4),
    })


@n2p.fallback
def size_rule(X: pd.DataFrame) -> pd.DataFrame:
    \"\"\"Non-AI path: the size/concavity rule of thumb; it gives no probability.\"\"\"
    suspicious = (X["worst radius"] > 16.8) | (X["worst concave points"] > 0.14)
    return pd.DataFrame({
        "diagnosis": np.where(suspicious, "malignant", "benign"),
        "probability_malignant": np.nan,
    }, index=X.index)


@n2p.guardrail
def large_mass_not_benign(X: pd.DataFrame, result: pd.DataFrame) -> pd.Series:
    \"\"\"Never let the model call a very large mass benign: the rule answers instead.\"\"\"
    large = X["worst radius"].to_numpy() > LARGE_MASS_RADIUS
    # numpy's ==, not pandas': on pandas 3's string column it costs ~3x more per request
    return ~(large & (result["diagnosis"].to_numpy() == "benign"))"""

CONTRACT = """\
# The input contract: drafted from the training data (ranges and sets only warn),
# then edited where we know better: a radius outside 0-60 mm is a data-entry error.
checks = n2p.expect(X_train)
checks.add(gxe.ExpectColumnValuesToBeBetween(column="mean radius", min_value=0, max_value=60))
checks"""

SAVE = """\
n2p.save_model("breast_cancer", model, reference=X_train, metrics=scores,
               gate={"roc_auc": min_roc_auc}, examples=X_test.head(5), checks=checks)"""


def flagship(name: str = "breast_cancer", **replace: str | None) -> list:
    """The flagship's cells; ``replace`` swaps (or with None drops) a named cell."""
    parts = {"imports": IMPORTS, "parameters": PARAMETERS, "data": DATA, "explore": EXPLORE,
             "explore2": EXPLORE2, "train": TRAIN, "serving": SERVING, "contract": CONTRACT,
             "save": SAVE.replace('"breast_cancer"', f'"{name}"')}
    parts.update(replace)
    cells = [new_markdown_cell(
        "# Breast cancer: from notebook to service\n\nA scaler + logistic regression on "
        "scikit-learn's bundled Wisconsin data. The serving code is marked with nb2prod; "
        "`nb2prod build` turns it into a BentoML service.")]
    for key, text in parts.items():
        if text is None:
            continue
        if key == "data":
            cells.append(new_markdown_cell("## Data\nLoaded and split at build and retrain "
                                           "time only: never exported."))
        if key == "serving":
            cells.append(new_markdown_cell("## Serving code\nExported to the service: the "
                                           "input check, the model function, the rule-based "
                                           "fallback and a guardrail."))
        cell = new_code_cell(text)
        if key == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    return cells


def write(path: Path, cells: list) -> None:
    for i, cell in enumerate(cells):  # fixed ids: regenerating rewrites only what changed
        cell.id = f"{path.stem[:50]}-{i}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


FIXTURES = {
    # a build must not see state that only an interactive session created
    "hidden_state": dict(serving=SERVING.replace("p >= MALIGNANT_THRESHOLD", "p >= CUTOFF")),
    "no_model": dict(serving=SERVING.replace("@n2p.model\n", "")),
    "no_markers": dict(serving=SERVING.replace("@n2p.model\n", "").replace("@n2p.fallback\n", "")
                       .replace("@n2p.guardrail\n", "").replace("@n2p.check\n", ""), save=None),
    "no_save_model": dict(save=None),
    "data_global": dict(serving=SERVING.replace(
        "p = model.predict_proba(X)[:, 1]",
        "p = model.predict_proba((X - X_train.mean()) + X_train.mean())[:, 1]")),
    "gate_not_met": dict(parameters=PARAMETERS.replace("min_roc_auc = 0.95", "min_roc_auc = 0.999")),
    "cell_raises": dict(train=TRAIN + "\nraise ValueError('training diverged')"),
    "shell_escape": dict(serving="!pip --version\n%time 1 + 1\n" + SERVING),
    "no_parameters_tag": None,
    "model_raises": dict(serving=SERVING.replace(
        "p = model.predict_proba(X)[:, 1]",
        "if (X[\"mean radius\"] > 25).any():\n        raise RuntimeError(\"out of range\")\n"
        "    p = model.predict_proba(X)[:, 1]")),
    "no_fallback": dict(serving=SERVING.replace("@n2p.fallback\n", "")),
    # a hand-written bound the training data itself breaks: the build must stop
    "reference_fails_checks": dict(contract=CONTRACT.replace("max_value=60", "max_value=25")),
}


# --- what save_model refuses, located, before anything reaches the model store -----------
FIXTURES.update({
    # the fallback answers with other columns than the model: clients would get two shapes
    "fallback_other_columns": dict(serving=SERVING.replace(
        '        "probability_malignant": np.nan,\n    }, index=X.index)',
        '    }, index=X.index)')),
    # values the service cannot have and a class without source: every problem at once
    "cannot_capture": dict(serving="""\
import sqlite3

lookup_db = sqlite3.connect(":memory:")          # a connection
big_table = pd.DataFrame(np.zeros((800, 800)))    # 5 MB: over the cap
batches = (i for i in range(3))                   # a generator
exec("class Doubler:\\n    def __call__(self, v):\\n        return 2 * v")  # no source
double = Doubler()


""" + SERVING.replace("p = model.predict_proba(X)[:, 1]",
                      "p = model.predict_proba(X)[:, 1]\n"
                      "    lookup_db.execute('select 1')\n"
                      "    _ = big_table.shape, double(1), batches")),
    # a helper named like an import: the service could get either (found before running)
    "helper_shadows_import": dict(serving="""\
from numpy import log


def log(v):                                       # shadows numpy's log, imported above
    return np.log1p(v)


""" + SERVING.replace("p = model.predict_proba(X)[:, 1]",
                      "p = model.predict_proba(X)[:, 1] + 0 * log(1.0)")),
})

# --- a model that misbehaves on a batch with a radius above 25 (test_reliability.py) ------
# The examples (and so the build's own tests) never trigger it; a request that does gets
# every row of its batch from the fallback.
_TRIGGER = '    if (X["mean radius"] > 25).any():\n'
_PREDICT = "    p = model.predict_proba(X)[:, 1]\n"
FIXTURES.update({
    # sleeps far past its deadline; timeout_s=0.5 keeps the tests quick (default 2.0)
    "model_hangs": dict(
        serving=("import time\n\nHANG_S = 10.0  # seconds: twenty deadlines\n"
                 + SERVING.replace(_PREDICT, _TRIGGER + "        time.sleep(HANG_S)\n" + _PREDICT)),
        save=SAVE.replace('"breast_cancer"', '"model_hangs"').replace(
            "checks=checks)", "checks=checks,\n               timeout_s=0.5)")),
    "model_returns_nan": dict(serving=SERVING.replace(
        _PREDICT, _PREDICT + _TRIGGER + "        p = np.full(len(X), np.nan)\n")),
    "model_wrong_rows": dict(serving=SERVING.replace(
        _PREDICT, _PREDICT + _TRIGGER + "        p = p[:-1]  # one answer short\n")),
})

# --- a PII column hashed in the audit log (test_build.py): the build needs no salt, serving
# refuses to start without one
FIXTURES["pii_hashed"] = dict(save=SAVE.replace('"breast_cancer"', '"pii_hashed"').replace(
    "checks=checks)", 'checks=checks,\n               pii={"mean radius": "hash"})'))


# --- retraining (test_retrain.py) ----------------------------------------------------------
# The flagship with its evaluation as a function, which retrain also runs on the production
# model (score_champion) so both are scored on the same holdout by the same code; and a
# notebook without a data parameter, which `nb2prod retrain --data` must refuse.
EVALUATED_TRAIN = """\
def evaluate(model) -> dict:
    \"\"\"The gate's metrics on this run's holdout; retrain scores production with it too.\"\"\"
    proba = model.predict_proba(X_test)[:, 1]
    return {"roc_auc": roc_auc_score(y_test, proba),
            "accuracy": accuracy_score(y_test, proba >= 0.5)}


model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
model.fit(X_train, y_train)
scores = evaluate(model)
n2p.score_champion(evaluate)  # production on this holdout, under nb2prod retrain only
scores"""
FIXTURES.update({
    "scores_champion": dict(train=EVALUATED_TRAIN),
    "no_data_parameter": dict(parameters=PARAMETERS.split("\ndata_path")[0], data="""\
data = load_breast_cancer(as_frame=True)
X, y = data.data, 1 - data.target
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=test_size, random_state=random_state, stratify=y)"""),
})

# --- one notebook, four spellings (test_spellings.py) -----------------------------------
# The flagship with its serving code one marked function per cell (what a cell-level
# spelling needs), a cell of constants to export and an exploration cell to skip. Only
# the spelling changes between the four; the decorator one has no export or skip word,
# so there the constants cell is plain and the exploration cell harmless.

SKIPPED_EXPLORE = EXPLORE + """
print("exploring: this output must not appear in a build")
pd.read_csv("only_on_my_laptop/notes.csv")  # raises anywhere but the author's machine"""


def _spell(way: str, word: str | None, text: str) -> tuple[str, list[str]]:
    """``text`` (decorator-free) marked with ``word`` in spelling ``way``: (source, tags)."""
    if word is None:
        return text, []
    return {"magics": (f"%%n2p {word}\n{text}", []),
            "directives": (f"#| n2p: {word}\n{text}", []),
            "tags": (text, [f"n2p-{word}"])}[way]


def spelled(way: str, name: str) -> list:
    """The split flagship with every n2p word written as ``way``: decorators, magics,
    directives or tags."""
    constants, *functions = SERVING.split("\n\n\n")
    cells = flagship(name, explore=None, explore2=None, serving=None, save=None)
    if way == "magics":
        cells[1].source = "%load_ext nb2prod\n" + cells[1].source
    explore = EXPLORE if way == "decorators" else SKIPPED_EXPLORE
    parts = [(None if way == "decorators" else "skip", explore),
             (None if way == "decorators" else "export", constants)]
    for text in functions:
        decorator, body = text.split("\n", 1)
        word = decorator.removeprefix("@n2p.")
        parts.append((None, text) if way == "decorators" else (word, body))
    new = []
    for word, text in parts:
        source, tags = _spell(way, word, text)
        cell = new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        new.append(cell)
    save = new_code_cell(SAVE.replace('"breast_cancer"', f'"{name}"'))
    return cells[:5] + new[:1] + cells[5:] + new[1:] + [save]


def conflict() -> list:
    """The tags spelling with one cell saying two different words."""
    cells = spelled("tags", "spelling_conflict")
    cells[5].source = "#| n2p: export\n" + cells[5].source  # the exploration cell, tagged skip
    return cells


def write_spellings() -> None:
    for way in ("decorators", "magics", "directives", "tags"):
        write(HERE / f"spelled_{way}.ipynb", spelled(way, f"spelled_{way}"))
    write(HERE / "spelling_conflict.ipynb", conflict())


def main() -> None:
    # The flagship scores production on its own holdout under retrain (champion/challenger).
    write(ROOT / "notebooks" / "breast_cancer.ipynb", flagship(train=EVALUATED_TRAIN))
    for scenario, replace in FIXTURES.items():
        if replace is None:  # no_parameters_tag: the same cells, no tag
            cells = flagship(scenario)
            for c in cells:
                c.metadata.pop("tags", None)
        else:
            cells = flagship(scenario, **replace)
        write(HERE / f"{scenario}.ipynb", cells)
    write_spellings()


if __name__ == "__main__":
    main()
