"""The classes a classifier can predict, known from training and stored with the version.

Feedback for a classifier must name one of them (``runtime/feedback.py``), so
``save_model`` finds them in this order and says which source it used:

1. ``classes=`` passed to ``save_model``: the classes, or the training labels (their
   distinct values are taken), e.g. ``classes=y_train``;
2. the model's ``classes_`` (scikit-learn, LightGBM's and XGBoost's sklearn API, a
   ``Pipeline`` ending in a classifier);
3. the distinct labels the ``@n2p.model`` function gives the training inputs (the
   ``reference``, up to ``SAMPLE`` rows of it) and the ``examples``: a PyTorch or custom
   model has no ``classes_``. A class training never predicts is missing, so it says so.
   (``save_model`` passes no reference for a model with a ``cost_per_call``: a paid API
   is not called a thousand times to guess its classes; only the examples are used.)

The examples' predicted labels must be among the classes: a ``@n2p.model`` function that
maps the model's classes (``0/1`` to ``"benign"/"malignant"``) serves other classes than
``classes_`` says, and then 3. is used, with a line saying to pass ``classes=``. Numpy
values are stored as plain JSON values.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from nb2prod.core.errors import Nb2prodError
from nb2prod.core.jsonify import rows, scalar
from nb2prod.core.markers import Marked
from nb2prod.runtime.feedback import KINDS, infer_kind, listed, predicted_label, same_class

SAMPLE = 1_000  # reference rows the model function labels when classes are not given


def classes_for(
    model: Any,
    given: Iterable[Any] | None,
    expected: tuple,
    marked: Marked | None = None,
    reference: pd.DataFrame | None = None,
) -> tuple | None:
    """The classes to store in the contract (None for a regressor, or when unknown);
    prints one line when they are a guess or unknown."""
    if expected and infer_kind(expected[0].get("prediction")) != "classifier":
        if given is not None:
            print("nb2prod: classes= ignored: the examples' predictions are numbers (a regressor)")
        return None
    labels = distinct(_predicted(expected), "the examples' predictions")
    found, source = None, ""
    if given is not None:
        found, source = distinct(given, "classes="), "classes="
    elif getattr(model, "classes_", None) is not None:
        found, source = distinct(model.classes_, "the model's classes_"), "the model's classes_"
    missing = [label for label in labels if not _known(label, found or ())]
    if found is not None and missing:
        if given is not None:
            raise Nb2prodError(
                f"the examples' predicted label {missing[0]!r} is not in classes= "
                f"({listed(found)})",
                where="save_model(classes=...)",
                fix="pass every class the @n2p.model function can return",
            )
        print(
            f"nb2prod: {source} ({listed(found)}) are not what @n2p.model returns "
            f"(e.g. {missing[0]!r}); feedback takes the examples' labels instead: pass "
            "classes=[...] to save_model to list them all"
        )
        found = None
    if found is None:
        labels = distinct(labels + _labelled(model, marked, reference), "the predictions")
    if found is None and labels:
        print(
            f"nb2prod: feedback labels must be one of {listed(labels)}, the labels "
            "@n2p.model gave the training inputs; pass classes=[...] (or classes=y_train) "
            "to save_model if the model predicts others"
        )
        return tuple(labels)
    if found is None:
        print(
            "nb2prod: the classes this model predicts are not known, so feedback takes any "
            "label of the predicted type; pass classes=[...] (or classes=y_train) to save_model"
        )
    return tuple(found) if found is not None else None


def distinct(values: Iterable[Any], where: str) -> list[Any]:
    """The distinct values, JSON-ready, sorted when they sort; ``Nb2prodError`` for a
    value that cannot be a class (not a string, integer, float or boolean)."""
    found: dict[tuple[str, Any], Any] = {}  # by what same_class compares: type, value
    for raw in list(values):
        value = scalar(raw)
        if not isinstance(value, (str, int, float)):
            raise Nb2prodError(
                f"{where} holds {value!r} ({type(raw).__name__}), which cannot be a class",
                where="save_model",
                fix="classes are strings, integers or booleans; pass classes=[...]",
            )
        key = (type(value).__name__, value) if isinstance(value, (bool, str)) else ("", value)
        found.setdefault(key, value)
    seen = list(found.values())
    try:
        return sorted(seen)
    except TypeError:  # e.g. strings and numbers: keep the order given
        return seen


def _known(label: Any, classes: Iterable[Any]) -> bool:
    return any(same_class(label, c) for c in classes)


def _predicted(expected: tuple) -> list[Any]:
    return _labels(a["prediction"] for a in expected if a.get("prediction") is not None)


def _labelled(model: Any, marked: Marked | None, reference: pd.DataFrame | None) -> list[Any]:
    """The labels the model function gives (a sample of) the training inputs; none when
    it cannot say (it raises: the examples' answers already showed it works)."""
    if marked is None or marked.model is None or reference is None or not len(reference):
        return []
    X = reference.head(SAMPLE).reset_index(drop=True)
    try:
        return _labels(rows(marked.model(model, X), len(X)))
    except Exception:  # the label set is a convenience: never fail save_model over it
        return []


def _labels(predictions: Iterable[Any]) -> list[Any]:
    kind = KINDS.get("classifier")
    try:
        found = [scalar(predicted_label(p, kind)) for p in predictions]
    except Nb2prodError:  # no field can hold a class
        return []
    return [label for label in found if label is not None]  # a NaN is no class
