import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nb2prod.markers import Marked
from nb2prod.runtime.predict import NoFallbackError, Predictor, RequestRejected

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 1.0, 0.0, 0.0]})
MODEL = LogisticRegression().fit(X, [0, 0, 1, 1])


def label(model, X):
    return pd.DataFrame({"label": model.predict(X), "p": model.predict_proba(X)[:, 1]})


def rule(X):
    return (X["a"] > 1.5).astype(int)


def predictor(**kwargs):
    return Predictor(MODEL, Marked(**{"model": label, "fallback": rule, **kwargs}))


def test_model_answers_every_row_when_nothing_goes_wrong():
    out = predictor().predict(X)
    assert [p["source"] for p in out] == ["model"] * 4
    assert [p["prediction"]["label"] for p in out] == [0, 0, 1, 1]
    assert all(isinstance(p["prediction"]["p"], float) for p in out)


def test_model_raising_sends_every_row_to_the_fallback_with_reason_error(caplog):
    def broken(model, X):
        raise RuntimeError("boom")
    out = predictor(model=broken).predict(X)
    assert [(p["prediction"], p["source"], p["reason"]) for p in out] == \
        [(0, "fallback", "error"), (0, "fallback", "error"), (1, "fallback", "error"),
         (1, "fallback", "error")]
    assert "boom" in caplog.text  # logged for the operator, never returned


@pytest.mark.parametrize("garbage", [np.zeros(3), np.zeros((4, 2)), "not a frame", None])
def test_wrong_shaped_output_counts_as_an_error(garbage):
    out = predictor(model=lambda model, X: garbage).predict(X)
    assert {p["reason"] for p in out} == {"error"}


def test_guardrail_failure_sends_only_that_row_to_the_fallback():
    def not_row_two(X, result):
        return pd.Series([True, True, False, True])
    out = predictor(guardrails=[not_row_two]).predict(X)
    assert [p["source"] for p in out] == ["model", "model", "fallback", "model"]
    assert out[2] == {"prediction": 1, "source": "fallback", "reason": "guardrail"}


def test_a_guardrail_that_raises_is_not_trusted():
    def raises(X, result):
        raise KeyError("x")
    assert {p["reason"] for p in predictor(guardrails=[raises]).predict(X)} == {"guardrail"}


def test_checks_reject_every_failing_row_at_once():
    def small_a(X):
        return X["a"] < 2
    with pytest.raises(RequestRejected) as e:
        predictor(checks=[small_a]).predict(X)
    assert [err["loc"] for err in e.value.errors] == [["records", 2], ["records", 3]]
    assert e.value.errors[0]["check"] == "small_a"


def test_no_fallback_is_a_clear_503_not_a_crash():
    def broken(model, X):
        raise RuntimeError("boom")
    with pytest.raises(NoFallbackError, match=r"4 row\(s\) \(error\).*no @n2p.fallback"):
        predictor(model=broken, fallback=None).predict(X)


def test_a_fallback_that_raises_too_is_a_503():
    def broken(model, X):
        raise RuntimeError("boom")
    def also_broken(X):
        raise ValueError("rule")
    with pytest.raises(NoFallbackError, match="fallback also_broken\\(\\) failed too"):
        predictor(model=broken, fallback=also_broken).predict(X)


def test_scalar_outputs_and_nan_become_json_values():
    out = predictor(model=lambda m, X: np.array([0.5, np.nan, 1, 2])).predict(X)
    assert [p["prediction"] for p in out] == [0.5, None, 1.0, 2.0]


def test_mixed_output_columns_become_plain_json_values():
    when = pd.to_datetime(["2026-01-01", None, "2026-01-03", "2026-01-04"])
    out = predictor(model=lambda m, X: pd.DataFrame({
        "n": np.arange(4), "x": [0.5, np.nan, 1.0, 2.0], "s": ["a", None, "c", "d"],
        "t": when, "b": [True, False, True, True]})).predict(X)
    assert out[1]["prediction"] == {"n": 1, "x": None, "s": None, "t": None, "b": False}
    assert out[0]["prediction"] == {"n": 0, "x": 0.5, "s": "a", "t": "2026-01-01T00:00:00",
                                    "b": True}
    assert all(type(p["prediction"]["n"]) is int for p in out)
