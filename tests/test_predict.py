import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import nb2prod as n2p
from nb2prod.core.markers import Marked
from nb2prod.runtime.predict import NoFallbackError, Policy, Predictor, RequestRejected

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 1.0, 0.0, 0.0]})
MODEL = LogisticRegression().fit(X, [0, 0, 1, 1])


def label(model, X):
    return pd.DataFrame({"label": model.predict(X), "p": model.predict_proba(X)[:, 1]})


def rule(X):
    return (X["a"] > 1.5).astype(int)


@n2p.check(severity="fallback")
def a_not_two(X):
    return X["a"] != 2


@n2p.check(severity="warn")
def small_b(X):
    return X["b"] < 1


@n2p.check(severity="fallback")
def not_first(X):
    return X.index != 0


def predictor(policy=Policy(), **kwargs):
    return Predictor(MODEL, Marked(**{"model": label, "fallback": rule, **kwargs}), policy=policy)


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
    assert out[2] == {"prediction": 1, "source": "fallback", "reason": "guardrail",
                      "warnings": []}


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


def test_scalar_outputs_become_json_values_and_nan_is_an_error():
    out = predictor(model=lambda m, X: np.array([0.5, np.nan, 1, 2])).predict(X)
    assert [p["prediction"] for p in out] == [0.5, 0, 1.0, 2.0]
    assert [p["reason"] for p in out] == [None, "error", None, None]


def test_mixed_output_columns_become_plain_json_values():
    when = pd.to_datetime(["2026-01-01", None, "2026-01-03", "2026-01-04"])
    out = predictor(model=lambda m, X: pd.DataFrame({
        "n": np.arange(4), "x": [0.5, 1.5, 1.0, 2.0], "s": ["a", None, "c", "d"],
        "t": when, "b": [True, False, True, True]})).predict(X)
    assert out[1]["prediction"] == {"n": 1, "x": 1.5, "s": None, "t": None, "b": False}
    assert out[0]["prediction"] == {"n": 0, "x": 0.5, "s": "a", "t": "2026-01-01T00:00:00",
                                    "b": True}
    assert all(type(p["prediction"]["n"]) is int for p in out)


def test_a_fallback_check_sends_its_rows_to_the_fallback_and_the_rest_to_the_model():
    seen = []

    def label_and_record(model, X):
        seen.append(list(X["a"]))
        return label(model, X)

    out = predictor(model=label_and_record, checks=[a_not_two]).predict(X)
    assert seen == [[0.0, 1.0, 3.0]]  # the model never sees the row the check routed away
    assert [(p["source"], p["reason"]) for p in out] == [
        ("model", None), ("model", None), ("fallback", "check"), ("model", None)]


def test_a_warn_check_lets_the_model_answer_and_attaches_the_warning():
    failures = []

    p = Predictor(MODEL, Marked(model=label, fallback=rule, checks=[small_b]),
                  on_failures=failures.extend)
    out = p.predict(X)
    assert [o["source"] for o in out] == ["model"] * 4
    assert [len(o["warnings"]) for o in out] == [1, 1, 0, 0]
    assert out[0]["warnings"][0]["check"] == "small_b"
    assert failures == [("small_b", "warn"), ("small_b", "warn")]


def test_guardrails_see_the_rows_the_model_saw_with_a_fresh_index():
    def aligned(X, result):  # naive pandas code: relies on X and result sharing an index
        return (X["a"] >= 0) & (result["label"] >= 0)

    out = predictor(checks=[not_first], guardrails=[aligned]).predict(X)
    assert [p["reason"] for p in out] == ["check", None, None, None]


def test_a_hanging_model_is_answered_by_the_fallback_within_the_deadline():
    import threading
    import time

    release = threading.Event()

    def hangs(model, X):
        release.wait(10)
        return label(model, X)

    p = predictor(model=hangs, policy=Policy(timeout_s=0.2))
    try:
        for _ in range(6):  # more calls than workers: stuck workers must not block later ones
            t0 = time.perf_counter()
            out = p.predict(X)
            assert time.perf_counter() - t0 < 0.2 + 0.05
            assert {(o["source"], o["reason"]) for o in out} == {("fallback", "timeout")}
    finally:
        release.set()


def test_awaited_on_the_event_loop_the_model_keeps_its_deadline_and_the_loop_stays_free():
    import asyncio
    import threading
    import time

    from nb2prod.runtime.predict import adrive

    release = threading.Event()

    def slow(model, X):
        time.sleep(0.05)
        return label(model, X)

    def hangs(model, X):
        release.wait(10)
        return label(model, X)

    async def many(p, n):
        ticks = 0

        async def ticker():  # counts while the model calls are awaited
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(adrive(p.steps(X), p.acall_model) for _ in range(n)))
        tick.cancel()
        return outs, time.perf_counter() - t0, ticks

    # more concurrent calls than the pool's 4 workers: they wait their turn, none times out
    outs, took, ticks = asyncio.run(many(predictor(model=slow, policy=Policy(timeout_s=2)), 12))
    assert {(o["source"], o["reason"]) for out in outs for o in out} == {("model", None)}
    assert ticks >= 5  # the loop ran other work while the calls were awaited
    # every worker held by a stuck call: later calls are answered by the fallback in time
    stuck = predictor(model=hangs, policy=Policy(timeout_s=0.2))
    try:
        outs, took, _ = asyncio.run(many(stuck, 10))
        assert {(o["source"], o["reason"]) for out in outs for o in out} == {
            ("fallback", "timeout")}
        assert took < 0.2 * 3 + 0.2  # waves of at most a deadline each, never a queue
        t0 = time.perf_counter()
        asyncio.run(many(stuck, 3))  # all four workers still stuck: at once
        assert time.perf_counter() - t0 < 0.1
    finally:
        release.set()


def confident(model, X):
    return pd.DataFrame({"label": [0, 0, 1, 1], "confidence": [0.9, 0.4, 0.3, 0.8]})


def test_low_confidence_rows_go_to_the_fallback():
    out = predictor(model=confident, policy=Policy(min_confidence=0.6)).predict(X)
    assert [(o["source"], o["reason"]) for o in out] == [
        ("model", None), ("fallback", "low_confidence"), ("fallback", "low_confidence"),
        ("model", None)]


def test_low_confidence_rows_can_wait_for_review_instead():
    policy = Policy(min_confidence=0.6, low_confidence="review")
    out = predictor(model=confident, policy=policy).predict(X)
    assert [(o["source"], o["prediction"]) for o in out][1:3] == [
        ("pending_review", None), ("pending_review", None)]
    assert out[0]["source"] == "model"


# --- a category training never had: checked by value, missing for the model ---------------
TRAINING = pd.DataFrame({"channel": pd.Categorical(["web", "store", "phone", "web"]),
                         "plan": ["basic", "pro", "basic", "pro"],  # plain strings
                         "amount": [10.0, 20.0, 30.0, 40.0]})


def served(checks, seen):
    """What the service does with records: a Predictor over the compiled drafted suite,
    fed the frame the service makes and the same rows as the model gets them."""
    from nb2prod.authoring.drafting import infer_columns
    from nb2prod.checks.compiled import CompiledSuite
    from nb2prod.runtime.schema import FrameMaker

    def model_fn(model, X):
        seen.append(X.copy())
        return pd.DataFrame({"label": np.ones(len(X), dtype=int)})

    def fallback_fn(X):
        seen.append(X.copy())
        return pd.DataFrame({"label": np.zeros(len(X), dtype=int)})

    maker = FrameMaker(infer_columns(TRAINING))
    p = Predictor(object(), Marked(model=model_fn, fallback=fallback_fn),
                  CompiledSuite(checks.to_json()))
    return lambda records: p.predict(X := maker(records), maker.for_model(X))


ROWS = [{"channel": "fax", "plan": "basic", "amount": 15.0},
        {"channel": "web", "plan": "enterprise", "amount": 25.0}]


def test_an_unseen_category_warns_by_value_and_the_model_sees_it_missing():
    seen = []
    out = served(n2p.expect(TRAINING), seen)(ROWS)
    assert [(o["source"], o["reason"]) for o in out] == [("model", None)] * 2
    [fax], [enterprise] = (o["warnings"] for o in out)  # not-null and type checks pass
    assert (fax["column"], fax["value"], fax["check"]) == (
        "channel", "fax", "expect_column_values_to_be_in_set")
    assert "fax" in fax["msg"] and "'web'" in fax["expected"]
    assert (enterprise["column"], enterprise["value"]) == ("plan", "enterprise")
    [X] = seen
    assert X["channel"].dtype == pd.CategoricalDtype(["phone", "store", "web"])
    assert X["channel"].isna().tolist() == [True, False]
    assert X["plan"].tolist() == ["basic", "enterprise"]  # a plain string passes as it came


def test_an_unseen_category_follows_the_severity_the_notebook_chose():
    seen = []
    checks = n2p.expect(TRAINING).set_severity(
        "fallback", column="channel", type="ExpectColumnValuesToBeInSet")
    out = served(checks, seen)(ROWS)
    assert [(o["source"], o["reason"]) for o in out] == [("fallback", "check"), ("model", None)]
    model_rows, fallback_rows = seen
    assert model_rows["channel"].tolist() == ["web"]
    assert fallback_rows["channel"].isna().all()  # the fallback gets the training dtype too
    checks.set_severity("reject", column="channel", type="ExpectColumnValuesToBeInSet")
    with pytest.raises(RequestRejected) as e:
        served(checks, seen)(ROWS)
    [refused] = e.value.errors
    assert (refused["loc"], refused["value"]) == (["records", 0, "channel"], "fax")
