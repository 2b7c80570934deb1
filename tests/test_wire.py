"""Decoding /predict and /feedback bodies (runtime/wire.py): strict types, no unknown keys,
every problem located, nothing a client sends echoed back at length."""

import json

import pytest

from nb2prod.core.errors import BadRequest
from nb2prod.core.spec import ColumnSpec
from nb2prod.runtime import wire
from nb2prod.runtime.records import record_type
from nb2prod.runtime.responses import error_response

COLUMNS = (
    ColumnSpec("mean radius", "float", False),
    ColumnSpec("age", "integer", False),
    ColumnSpec("smoker", "boolean", False),
    ColumnSpec("plan", "category", True, ("basic", "gold")),
    ColumnSpec("note", "string", True),
)
GOOD = {"mean radius": 14.2, "age": 41, "smoker": False, "plan": "gold", "note": None}
PREDICT = wire.predict_request(record_type(COLUMNS, "T"), "T")


def refused(adapter, body) -> BadRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BadRequest) as caught:
        wire.decode(adapter, raw)
    return caught.value


def test_a_valid_body_decodes_to_plain_records():
    body = {"records": [GOOD, {**GOOD, "mean radius": 3, "plan": "platinum"}]}
    assert wire.decode(PREDICT, json.dumps(body).encode())["records"] == body["records"]


@pytest.mark.parametrize("column, value, kind", [
    ("mean radius", True, "float_type"),      # a JSON boolean is not a number
    ("mean radius", "14.2", "float_type"),    # nor is a number in a string
    ("mean radius", None, "float_type"),      # not nullable
    ("age", 41.5, "int_type"),                # an integer column takes JSON integers
    ("age", True, "int_type"),
    ("smoker", 1, "bool_type"),
    ("smoker", "true", "bool_type"),
    ("note", 7, "string_type"),
])
def test_a_value_of_the_wrong_json_type_is_400_naming_row_column_and_value(column, value, kind):
    exc = refused(PREDICT, {"records": [GOOD, {**GOOD, column: value}]})
    assert exc.status == 400
    assert exc.detail[0]["loc"] == ["records", 1, column]
    assert exc.detail[0]["type"] == kind and exc.detail[0]["value"] == value
    assert f"records.1.{column}" in exc.what


def test_unknown_keys_are_400_at_the_top_and_in_a_record():
    top = refused(PREDICT, {"records": [GOOD], "explain": True})
    assert top.detail[0]["loc"] == ["explain"] and top.detail[0]["type"] == "extra_forbidden"
    inner = refused(PREDICT, {"records": [{**GOOD, "colour": "red"}]})
    assert inner.detail[0]["loc"] == ["records", 0, "colour"]


def test_missing_columns_and_counts_out_of_range_are_400():
    missing = refused(PREDICT, {"records": [{k: v for k, v in GOOD.items() if k != "age"}]})
    assert missing.detail == [{"loc": ["records", 0, "age"], "type": "missing",
                               "msg": "Field required"}]
    assert refused(PREDICT, {"records": []}).detail[0]["type"] == "too_short"
    many = refused(PREDICT, {"records": [GOOD] * (wire.MAX_RECORDS + 1)})
    assert many.detail[0]["type"] == "too_long"
    assert refused(PREDICT, {}).detail[0]["loc"] == ["records"]
    assert refused(PREDICT, [GOOD]).detail[0]["type"] == "dict_type"


def test_many_problems_are_counted_and_the_first_ones_listed():
    exc = refused(PREDICT, {"records": [{**GOOD, "age": "x"}] * 50})
    assert len(exc.detail) == wire.SHOWN_ERRORS
    assert "50 problems in all" in exc.what


def test_a_forged_or_huge_key_is_not_echoed_back_at_length():
    key = "\n[ERROR] FORGED LOG LINE" + "k" * 1_000_000
    exc = refused(PREDICT, {"records": [{**GOOD, key: 1}]})
    shown = exc.detail[0]["loc"][2]
    assert len(shown) <= wire.SHOWN_VALUE + 1 and shown.endswith("…")
    assert len(json.dumps(exc.detail)) < 1000


@pytest.mark.parametrize("raw", [b"{nope", b'{"records": [' * 10_000, b"\xff\xfe", b""])
def test_a_body_that_does_not_parse_is_400_never_a_crash(raw):
    exc = refused(PREDICT, raw)
    assert exc.status == 400 and "JSON" in exc.what or "records" in exc.what


BIG = 10**20  # beyond 64 bits: valid JSON, but orjson cannot write it back


@pytest.mark.parametrize("adapter, body", [
    (PREDICT, [BIG]),
    (PREDICT, {"records": [{**GOOD, "mean radius": [BIG]}]}),
    (PREDICT, {"records": [{**GOOD, "note": {"a": BIG}}]}),
    (PREDICT, {"records": BIG}),
    (PREDICT, {"records": [{**GOOD, "age": BIG}]}),  # an integer column is int64
    (wire.FEEDBACK, [BIG]),
    (wire.FEEDBACK, {"request_id": "ab12", "label": [BIG], "row": 0}),
])
def test_a_refused_value_with_a_huge_integer_is_a_400_showing_it(adapter, body):
    """Schemathesis found these answered 500: showing the refused value raised."""
    exc = refused(adapter, body)
    assert exc.status == 400 and str(BIG) in json.dumps(exc.detail)
    shown = json.loads(error_response(exc).body)
    assert shown["detail"] == exc.detail


def test_feedback_takes_exactly_request_id_label_and_row():
    good = {"request_id": "ab12", "label": "benign", "row": 0}
    assert wire.decode(wire.FEEDBACK, json.dumps(good).encode()) == good
    assert "row" not in wire.decode(wire.FEEDBACK, b'{"request_id": "a", "label": 1}')  # row 0
    assert refused(wire.FEEDBACK, {**good, "by": "me"}).detail[0]["loc"] == ["by"]
    for label in (None, [1], {"a": 1}):
        assert refused(wire.FEEDBACK, {**good, "label": label}).status == 400
    assert refused(wire.FEEDBACK, {**good, "row": -1}).detail[0]["loc"] == ["row"]
    assert refused(wire.FEEDBACK, {**good, "row": "1"}).detail[0]["loc"] == ["row"]


def test_a_datetime_column_takes_iso_text_and_nothing_else():
    adapter = wire.predict_request(record_type((ColumnSpec("when", "datetime", False),), "D"), "D")
    decoded = wire.decode(adapter, b'{"records": [{"when": "2026-01-02T03:04:05"}]}')
    assert decoded["records"][0]["when"].isoformat() == "2026-01-02T03:04:05"
    assert refused(adapter, {"records": [{"when": 12345}]}).detail[0]["loc"] == [
        "records", 0, "when"]
