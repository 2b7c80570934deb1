"""Feedback joined to the audit log, live quality, and the retraining export, on real databases."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
from audit_db import SALT, answer, rid

from nb2prod.core.errors import UsageError
from nb2prod.runtime.audit import AuditUnavailable
from nb2prod.runtime.feedback import (
    KINDS,
    FeedbackLog,
    LabelError,
    UnknownRecordError,
    export_feedback,
    infer_kind,
    predicted_label,
)

HAS_PARQUET = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))


def classified(log, predictions, inputs=None):
    """Record one request whose rows the model answered with ``predictions``; its id."""
    request = rid()
    inputs = inputs or [{"x": float(i)} for i in range(len(predictions))]
    log.record(request, inputs, [answer(p) for p in predictions], latency_ms=1)
    return request


def test_feedback_joins_its_audited_row(db):
    log = db.open()
    fb = FeedbackLog(log)
    request = classified(log, [{"label": 1, "probability": 0.9}, {"label": 0, "probability": 0.2}])
    result = fb.record_feedback(request, 0, row=1)
    assert (result.request_id, result.row, result.model_version) == (request, 1, "demo:v1")
    assert result.new and result.score == 1.0
    [stored] = db.rows("feedback")
    assert (stored["request_id"], stored["row"], stored["label"]) == (request, 1, 0)
    assert (stored["kind"], stored["source"], stored["updated_at"]) == ("classifier", "model", None)


def test_unknown_request_or_row_is_a_not_found_error(db):
    log = db.open()
    fb = FeedbackLog(log)
    request = classified(log, [1])
    with pytest.raises(UnknownRecordError, match="no audited answer") as err:
        fb.record_feedback("no-such-request", 1)
    assert err.value.status == 404 and "request_id" in err.value.fix
    with pytest.raises(UnknownRecordError, match=r"row 5 \(it has 1 row\(s\)\)"):
        fb.record_feedback(request, 1, row=5)
    assert db.rows("feedback") == []


def test_a_second_label_for_a_row_replaces_the_first(db):
    log = db.open()
    fb = FeedbackLog(log)
    request = classified(log, [1])
    assert fb.record_feedback(request, 0).new
    assert fb.quality("demo:v1")["value"] == 0.0
    again = fb.record_feedback(request, 1)
    assert not again.new and again.score == 1.0
    [stored] = db.rows("feedback")
    assert stored["label"] == 1 and stored["updated_at"] is not None
    assert fb.quality("demo:v1") == {"kind": "classifier", "metric": "accuracy",
                                     "value": 1.0, "n": 1}


@pytest.mark.parametrize("label, message", [
    ({"label": 1}, "not an object"),
    ([1], "not a list"),
    (None, "not null"),
    ("1", "is text but the model predicts a number"),
    ("x" * 257, "the label is 257 characters long; at most 256"),
])
def test_a_label_the_classifier_cannot_compare_is_a_bad_request(db, label, message):
    log = db.open()
    fb = FeedbackLog(log)
    request = classified(log, [{"label": 1, "probability": 0.7}])
    with pytest.raises(LabelError, match=message) as err:
        fb.record_feedback(request, label)
    assert err.value.status == 400
    assert db.rows("feedback") == []


def test_regressor_labels_are_finite_numbers(db):
    log = db.open()
    fb = FeedbackLog(log, kind="regressor")
    request = classified(log, [{"price": 10.0}])
    for bad in ("ten", True, float("inf"), float("nan"), [10.0], None, {"v": 1}, 10**400):
        with pytest.raises(LabelError, match="a regressor label is a finite number") as err:
            fb.record_feedback(request, bad)
        assert err.value.status == 400
    assert fb.record_feedback(request, 12.5).score == 2.5
    assert fb.record_feedback(request, 12).label == 12.0  # stored as a float
    assert [r["label"] for r in db.rows("feedback")] == [12.0]


def test_a_classifier_label_must_be_one_of_its_classes(db):
    log = db.open()
    fb = FeedbackLog(log, classes=(0, 1))
    request = classified(log, [{"label": 1, "probability": 0.9}])
    for bad in ("definitely-not-a-class", "1", True, 2, 0.5, -1):
        with pytest.raises(LabelError, match=r"is not a class this model predicts; "
                                             r"the classes are 0, 1") as err:
            fb.record_feedback(request, bad)
        assert err.value.status == 400 and err.value.fix == "send one of 0, 1"
    assert db.rows("feedback") == []
    # a number names the class of its value; it is stored as the class, in the class's type
    assert fb.record_feedback(request, 1.0).label == 1
    [stored] = db.rows("feedback")
    assert stored["label"] == 1 and type(stored["label"]) is int


def test_string_classes_and_boolean_classes_take_only_themselves(db):
    log = db.open()
    request = classified(log, [{"diagnosis": "benign", "p": 0.1}])
    named = FeedbackLog(log, classes=("benign", "malignant"))
    with pytest.raises(LabelError, match="'benign', 'malignant'"):
        named.record_feedback(request, "Benign")
    assert named.record_feedback(request, "benign").score == 1.0
    flags = FeedbackLog(log, classes=(False, True))
    with pytest.raises(LabelError, match="False, True"):
        flags.record_feedback(classified(log, [True]), 1)


def test_a_refused_label_is_never_shown_whole(db):
    log = db.open()
    fb = FeedbackLog(log, classes=tuple(f"class {i}" for i in range(50)))
    request = classified(log, ["class 3"])
    deep: list = []
    for _ in range(10_000):  # what json.loads makes of a 10,000-deep array
        deep = [deep]
    for bad in ("x" * 9 * 2**20, deep, {"k" * 2**20: 1}):
        with pytest.raises(LabelError) as err:
            fb.record_feedback(request, bad)
        assert len(str(err.value)) < 1000
    with pytest.raises(LabelError, match=r"'class 19' and 30 more"):
        fb.record_feedback(request, "class 99")


def test_classifier_accuracy_per_model_version(db):
    log = db.open()
    fb = FeedbackLog(log)
    request = classified(log, [1, 0, 1, 1])
    for row, label in enumerate([1, 0, 0, 1]):
        fb.record_feedback(request, label, row=row)
    other = db.open(model_version="demo:v2")
    newer = classified(other, ["cat", "dog"])
    FeedbackLog(other).record_feedback(newer, "dog", row=0)
    assert fb.quality("demo:v1") == {"kind": "classifier", "metric": "accuracy",
                                     "value": 0.75, "n": 4}
    assert fb.quality("demo:v2")["value"] == 0.0 and fb.quality("demo:v2")["n"] == 1
    assert fb.quality("demo:v9") == {"kind": "classifier", "metric": "accuracy",
                                     "value": None, "n": 0}


def test_regressor_mean_absolute_error(db):
    log = db.open()
    fb = FeedbackLog(log, kind="regressor")
    request = classified(log, [10.0, 20.0, 30.0])
    for row, label in enumerate([12.0, 20.0, 25.0]):
        fb.record_feedback(request, label, row=row)
    assert fb.quality("demo:v1") == {"kind": "regressor", "metric": "mae",
                                     "value": pytest.approx(7 / 3), "n": 3}


def test_the_predicted_label_of_a_dataframe_row():
    classifier, regressor = KINDS.get("classifier"), KINDS.get("regressor")
    row = {"probability": 0.8, "segment": "b", "label": 1}
    assert predicted_label(row, classifier) == "b"  # the first string/integer field
    assert predicted_label(row, classifier, "label") == 1
    assert predicted_label(row, regressor) == 0.8  # the first number
    assert predicted_label(7, classifier) == 7  # a scalar prediction is the label
    with pytest.raises(Exception, match="no field 'cls'") as err:
        predicted_label(row, classifier, "cls")
    assert "label_field" in err.value.fix
    with pytest.raises(UsageError, match="unknown output kind"):
        KINDS.get("ranker")


def test_a_default_kind_from_an_example_prediction():
    assert infer_kind({"label": 1, "probability": 0.9}) == "classifier"
    assert infer_kind({"price": 12.5, "low": 10.0}) == "regressor"
    assert infer_kind({"segment": "b", "score": 0.4}, label_field="score") == "regressor"
    assert infer_kind("cat") == "classifier" and infer_kind(3) == "classifier"
    assert infer_kind(3.25) == "regressor"


def test_label_field_picks_what_feedback_is_compared_with(db):
    log = db.open()
    fb = FeedbackLog(log, label_field="label")
    request = classified(log, [{"segment": "b", "label": 1}])
    assert fb.record_feedback(request, 1).score == 1.0
    with pytest.raises(LabelError, match="the model predicts text"):
        FeedbackLog(log).record_feedback(request, 1)  # default: compared with "b"


def test_feedback_finds_a_record_still_in_the_spool(db):
    log = db.open()
    with db.down():
        request = classified(log, [1])
        assert db.request_ids() == []
        with pytest.raises(AuditUnavailable):
            FeedbackLog(log).record_feedback(request, 1)
    assert FeedbackLog(log).record_feedback(request, 1).new  # flushed on the way
    assert db.request_ids() == [request]


def test_export_to_csv_is_a_labelled_data_set(db, tmp_path):
    log = db.open(pii={"email": "hash", "name": "drop"}, salt=SALT)
    fb = FeedbackLog(log)
    people = [{"age": 30 + i, "email": f"p{i}@x.org", "name": f"P{i}"} for i in range(3)]
    request = classified(log, [1, 0, 1], inputs=people)
    classified(log, [1])  # no feedback: not exported
    fb.record_feedback(request, 1, row=0)
    fb.record_feedback(request, 1, row=2)
    db.open(model_version="other:v1").record(rid(), [{"age": 1}], [answer(1)], latency_ms=1)
    result = export_feedback(db.url, "demo", tmp_path / "out" / "labels.csv",
                             table_prefix=db.prefix)
    assert (result.rows, result.format) == (2, "csv")
    frame = pd.read_csv(result.path)
    assert list(frame.columns) == ["age", "email", "label"]
    assert sorted(frame["age"]) == [30, 32] and list(frame["label"]) == [1, 1]
    assert all(e.startswith("sha256:") for e in frame["email"])


def test_export_writes_labels_in_the_classes_own_type(db, tmp_path):
    log = db.open()
    fb = FeedbackLog(log, classes=(0, 1))
    request = classified(log, [1, 0, 1])
    for row, label in enumerate((1.0, 0, 1)):  # 1.0 is class 1: exported as 1, an integer
        fb.record_feedback(request, label, row=row)
    result = export_feedback(db.url, "demo", tmp_path / "labels.csv", table_prefix=db.prefix)
    frame = pd.read_csv(result.path)
    assert list(frame["label"]) == [1, 0, 1] and frame["label"].dtype.kind == "i"


@pytest.mark.skipif(not HAS_PARQUET, reason="pyarrow is not installed: parquet export is "
                    "refused (see the test below); pip install pyarrow to run this one")
def test_export_to_parquet(db, tmp_path):
    log = db.open()
    request = classified(log, ["a", "b"])
    FeedbackLog(log).record_feedback(request, "b", row=1)
    result = export_feedback(db.url, "demo", tmp_path / "labels.parquet", table_prefix=db.prefix)
    frame = pd.read_parquet(result.path)
    assert frame.to_dict("records") == [{"x": 1.0, "label": "b"}]


@pytest.mark.skipif(HAS_PARQUET, reason="pyarrow is installed: parquet export works")
def test_export_to_parquet_without_pyarrow_says_so(tmp_path):
    with pytest.raises(UsageError, match="needs pyarrow") as err:
        export_feedback(None, "demo", tmp_path / "labels.parquet")
    assert ".csv" in err.value.fix
    assert not (tmp_path / "labels.parquet").exists()


def test_export_refuses_unknown_formats(tmp_path):
    with pytest.raises(UsageError, match="cannot write .xlsx") as err:
        export_feedback(None, "demo", tmp_path / "labels.xlsx")
    assert ".csv" in err.value.fix
