"""The classes save_model stores with a classifier's version (authoring/classes.py): from
``classes=``, the model's ``classes_``, or what the model function gives the training
inputs; JSON-ready; and a contract saved before them still loads."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from nb2prod.authoring.classes import classes_for
from nb2prod.core.errors import Nb2prodError
from nb2prod.core.markers import Marked
from nb2prod.core.spec import ColumnSpec, Contract

X = pd.DataFrame({"x": np.arange(40, dtype=float)})
y = (X["x"] > 19).astype(np.int64)


def answered(*labels, field="label"):
    """What save_model's examples give: one answer per row."""
    return tuple({"prediction": {field: v, "p": 0.5}, "source": "model"} for v in labels)


def test_the_models_classes_are_stored_as_plain_json_values(capsys):
    model = LogisticRegression().fit(X, y)
    assert isinstance(model.classes_[0], np.integer)
    found = classes_for(model, None, answered(0, 1))
    assert found == (0, 1) and all(type(c) is int for c in found)
    assert json.dumps(found) == "[0, 1]"
    assert capsys.readouterr().out == ""  # known from training: nothing to say
    words = LogisticRegression().fit(X, np.where(y, "yes", "no"))
    assert classes_for(words, None, answered("no")) == ("no", "yes")


def test_classes_given_are_the_distinct_training_labels():
    assert classes_for(object(), pd.Series([1, 0, 1, 1]), answered(1)) == (0, 1)
    assert classes_for(object(), ["b", "a", "b"], ()) == ("a", "b")
    with pytest.raises(Nb2prodError, match="predicted label 2 is not in classes="):
        classes_for(object(), [0, 1], answered(0, 2))
    with pytest.raises(Nb2prodError, match="cannot be a class"):
        classes_for(object(), [[0, 1]], ())


def test_a_model_function_that_maps_the_classes_is_labelled_on_the_training_inputs(capsys):
    model = LogisticRegression().fit(X, y)

    def predict(model, X):
        return pd.DataFrame({"diagnosis": np.where(model.predict(X), "malignant", "benign")})

    found = classes_for(
        model, None, answered("benign", field="diagnosis"), Marked(model=predict), X
    )
    assert found == ("benign", "malignant")  # the examples showed only "benign"
    said = capsys.readouterr().out
    assert "the model's classes_ (0, 1) are not what @n2p.model returns" in said
    assert "pass classes=[...]" in said


def test_a_model_function_answering_booleans_has_boolean_classes(capsys):
    model = LogisticRegression().fit(X, y)  # classes_ 0, 1; the function says True/False

    def predict(model, X):
        p = model.predict_proba(X)[:, 1]
        return pd.DataFrame({"default": p >= 0.5, "probability": p})

    found = classes_for(model, None, answered(True, field="default"), Marked(model=predict), X)
    assert found == (False, True) and all(type(c) is bool for c in found)
    assert "(e.g. True)" in capsys.readouterr().out


def test_a_model_without_classes_like_pytorch_is_labelled_on_the_training_inputs(capsys):
    class Net:  # no classes_: what a torch module or a custom class gives
        def __call__(self, X):
            return X["x"].to_numpy() > 19

    def predict(model, X):
        return pd.DataFrame({"label": model(X).astype(np.int64), "p": 0.5})

    assert classes_for(Net(), None, answered(1), Marked(model=predict), X) == (0, 1)
    assert "feedback labels must be one of 0, 1" in capsys.readouterr().out


def test_a_regressor_has_no_classes_and_unknown_ones_are_said(capsys):
    model = LinearRegression().fit(X, X["x"] * 2)
    regressed = ({"prediction": 3.5, "source": "model"},)
    assert classes_for(model, None, regressed) is None
    assert classes_for(object(), None, ()) is None
    assert "classes this model predicts are not known" in capsys.readouterr().out


def test_a_contract_keeps_its_classes_and_one_saved_before_them_loads():
    contract = Contract("m", (ColumnSpec("x", "float", False),), "0" * 64, classes=(0, 1))
    data = json.loads(json.dumps(contract.to_json()))
    assert Contract.from_json(data).classes == (0, 1)
    del data["classes"]  # a version saved by an nb2prod before this field
    assert Contract.from_json(data).classes is None
