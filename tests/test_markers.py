import types

import pytest

import nb2prod as n2p
from nb2prod.core.errors import MarkerError
from nb2prod.core.markers import ATTR, collect


def fresh_module(name):
    """Marked functions register per module, as each notebook's kernel would."""
    return types.ModuleType(name).__dict__


def define(ns, src):
    ns["n2p"] = n2p
    exec(src, ns)
    return ns


def test_marker_returns_the_function_unchanged_and_attaches_a_spec():
    ns = define(fresh_module("m1"), "@n2p.model\ndef predict(model, X):\n    return X * 2\n")
    fn = ns["predict"]
    assert fn(None, 21) == 42
    assert getattr(fn, ATTR).kind == "model" and fn.__name__ == "predict"


def test_markers_work_with_and_without_parentheses():
    ns = define(fresh_module("m2"), """
@n2p.fallback()
def rule(X): return 0
@n2p.check(severity="reject")
def positive(X): return X > 0
@n2p.guardrail
def sane(X, result): return True
""")
    marked = collect(ns)
    assert marked.fallback is ns["rule"]
    assert [f.__name__ for f in marked.checks] == ["positive"]
    assert getattr(ns["positive"], ATTR).severity == "reject"
    assert [f.__name__ for f in marked.guardrails] == ["sane"]


def test_unknown_option_fails_at_decoration_time_with_the_valid_ones():
    with pytest.raises(MarkerError, match=r"unknown option\(s\) timeout; valid options: none"):
        n2p.model(timeout=3)
    with pytest.raises(MarkerError, match="valid options: severity"):
        n2p.check(sevrity="reject")


def test_unknown_severity_is_refused():
    with pytest.raises(MarkerError, match="not a known severity"):
        n2p.check(severity="sometimes")


def test_a_second_model_fails_and_says_how_to_fix():
    ns = define(fresh_module("m3"), "@n2p.model\ndef a(model, X): return X\n")
    with pytest.raises(MarkerError, match=r"second @n2p.model: b\(\).*already has a\(\)") as e:
        define(ns, "@n2p.model\ndef b(model, X): return X\n")
    assert "remove @n2p.model from one of them" in str(e.value)


def test_rerunning_a_cell_or_renaming_is_not_a_second_model():
    ns = define(fresh_module("m4"), "@n2p.model\ndef a(model, X): return X\n")
    define(ns, "@n2p.model\ndef a(model, X): return X + 1\n")  # the same cell run again
    define(ns, "del a\n@n2p.model\ndef renamed(model, X): return X\n")
    assert collect(ns).model is ns["renamed"]


@pytest.mark.parametrize("src, message", [
    ("@n2p.model\ndef p(X): return X", r"must take 2 argument\(s\) \(model, X\), it takes X"),
    ("@n2p.guardrail\ndef g(X): return True", r"\(X, result\)"),
    ("def outer():\n    @n2p.fallback\n    def inner(X): return X\nouter()", "nested"),
])
def test_wrong_shapes_are_refused(src, message):
    with pytest.raises(MarkerError, match=message):
        define(fresh_module("m5"), src)


def test_lambda_is_refused():
    with pytest.raises(MarkerError, match="function defined with def"):
        n2p.fallback(lambda X: X)
