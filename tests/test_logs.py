"""Server logs a client cannot forge or flood (``safe``, the refused-request filter) and
one traceback per failure, then a count (``Tracebacks``, on a real ``Predictor``)."""

import logging

import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from nb2prod.core.markers import Marked
from nb2prod.runtime import logs
from nb2prod.runtime.logs import ClientErrors, Tracebacks, safe
from nb2prod.runtime.predict import Predictor


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain text, ünïcode", "plain text, ünïcode"),
        ("a\n[ERROR] FORGED", "a\\n[ERROR] FORGED"),
        ("cr\rtab\tesc\x1b[31m", "cr\\rtab\\tesc\\x1b[31m"),
        ("back\\slash", "back\\\\slash"),  # else "\\n" in the text would read as an escape
        ("line\u2028sep", "line\\u2028sep"),
        (123, "123"),
    ],
)
def test_safe_escapes_control_characters(text, shown):
    assert safe(text) == shown


def test_safe_cuts_long_text_with_a_marker():
    assert safe("k" * 1_000_000, limit=10) == "kkkkkkkkkk...[+999990 chars]"
    assert safe("k" * 10, limit=10) == "k" * 10


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


def refused(key):
    """The record BentoML logs for a request pydantic refused because of ``key``."""
    try:
        Strict.model_validate({"x": 1, key: 2})
    except ValidationError as exc:
        error = exc
    return logging.LogRecord(
        logs.BENTOML_HTTP,
        logging.ERROR,
        __file__,
        1,
        "Exception on %s",
        ("/predict\nX",),
        (type(error), error, None),
    )


@pytest.mark.parametrize("key", ["mean radius\n[ERROR] FORGED LOG LINE", "k" * 2**20])
def test_a_refused_request_is_one_bounded_line_whatever_its_keys(key):
    record = refused(key)
    ClientErrors().filter(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line and "\r" not in line
    assert len(line) < 400
    assert line.startswith("INFO refused a request to /predict\\nX: 1 invalid value(s) (400)")
    assert "Extra inputs are not permitted" in line


def test_the_access_log_escapes_the_decoded_path():
    logs.install()
    access = logging.getLogger(logs.BENTOML_ACCESS)
    assert sum(isinstance(f, logs.Escaped) for f in access.filters) == 1
    logs.install()  # once per process, however often a service is made
    assert sum(isinstance(f, logs.Escaped) for f in access.filters) == 1
    record = logging.LogRecord(
        logs.BENTOML_ACCESS,
        logging.INFO,
        __file__,
        1,
        "%s (%s) (%s) %.3fms",
        ("127.0.0.1:1", "method=GET,path=/x\n[ERROR] FORGED" + "p" * 10**4, "status=404", 1.5),
        None,
    )
    next(f for f in access.filters if isinstance(f, logs.Escaped)).filter(record)
    line = record.getMessage()
    assert "\n" not in line and len(line) < 1000 and "path=/x\\n[ERROR] FORGED" in line


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def boom(kind=ValueError, text="bad value\n[ERROR] FORGED"):
    try:
        raise kind(text)
    except Exception as exc:
        return exc


def test_the_first_traceback_is_logged_then_repeats_are_counted_and_summarised(caplog):
    clock = Clock()
    limiter = Tracebacks(every=lambda: 60.0, clock=clock)
    log = logging.getLogger("nb2prod.test")
    with caplog.at_level(logging.WARNING, logger="nb2prod.test"):
        for _ in range(5):
            limiter.failed(log, "m:1", "predict()", boom(), "model function predict() failed")
        limiter.failed(log, "m:1", "predict()", boom(KeyError), "model function predict() failed")
        limiter.failed(log, "m:2", "predict()", boom(), "model function predict() failed")
        assert [r.levelname for r in caplog.records] == ["ERROR"] * 3  # one per key
        first = caplog.records[0].getMessage()
        assert "Traceback (most recent call last):" in first and "in boom" in first
        assert "bad value\\n[ERROR] FORGED" in first  # the message escaped, frames kept
        assert not any(line.startswith("[ERROR]") for line in caplog.text.splitlines())
        clock.now = 30.0
        limiter.failed(log, "m:1", "predict()", boom(), "model function predict() failed")
        assert len(caplog.records) == 3  # not yet time for a summary
        clock.now = 61.0
        limiter.failed(log, "m:1", "predict()", boom(), "model function predict() failed")
        summary = caplog.records[-1]
        assert summary.levelname == "WARNING"
        assert summary.getMessage().endswith("m:1 predict(): ValueError x6")
        limiter.flush(log)
        assert len(caplog.records) == 4  # nothing counted since


def test_flush_writes_what_was_counted(caplog):
    limiter = Tracebacks(every=lambda: 3600.0)
    log = logging.getLogger("nb2prod.test")
    with caplog.at_level(logging.WARNING, logger="nb2prod.test"):
        for _ in range(3):
            limiter.failed(log, "m:1", "rules()", boom(), "fallback rules() failed")
        limiter.flush(log)
    assert caplog.records[-1].getMessage().endswith("m:1 rules(): ValueError x2")


def test_a_model_raising_on_every_request_logs_one_traceback(caplog):
    def predict(model, X):
        raise ValueError(f"cannot score {X.iloc[0, 0]!r}")

    def rules(X):
        return pd.Series(["benign"] * len(X))

    predictor = Predictor(None, Marked(model=predict, fallback=rules), version="m:1")
    with caplog.at_level(logging.INFO, logger="nb2prod"):
        for i in range(20):
            answers = predictor.predict(pd.DataFrame({"x": [f"value {i}\n[ERROR] FORGED"]}))
            assert answers[0]["source"] == "fallback" and answers[0]["reason"] == "error"
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1, caplog.text
    assert "m:1" in tracebacks[0].getMessage()
    assert not any(line.startswith("[ERROR]") for line in caplog.text.splitlines())
