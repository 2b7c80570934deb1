"""Large all-float bodies decoded straight into one array (runtime/rows.py): the decoder
accepts only what pydantic-core accepts, with the same values, and declines everything
else, which then gets pydantic-core's 400 as before."""

import json
import random
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from nb2prod.core.errors import BadRequest
from nb2prod.core.markers import Marked
from nb2prod.core.settings import Settings
from nb2prod.core.spec import ColumnSpec
from nb2prod.runtime import rows as rows_module
from nb2prod.runtime import wire
from nb2prod.runtime.predict import Predictor
from nb2prod.runtime.records import record_type
from nb2prod.runtime.rows import FloatBodies, Rows
from nb2prod.runtime.schema import FrameMaker
from nb2prod.runtime.serving import Serving

COLUMNS = (ColumnSpec("mean radius", "float", False), ColumnSpec("a\u00e9", "float", False),
           ColumnSpec("true", "float", False))
NAMES = [c.name for c in COLUMNS]
ADAPTER = wire.predict_request(record_type(COLUMNS, "F"), "F")
FAST = FloatBodies(COLUMNS, wire.MAX_RECORDS)
GOOD = [{"mean radius": 14.2, "a\u00e9": 0.0, "true": 1.0},
        {"mean radius": 3, "a\u00e9": -0.0, "true": 1e-300},
        {"true": 2.5, "mean radius": 9007199254740993, "a\u00e9": 1e308}]


@pytest.fixture(autouse=True, params=["whole", "in pieces"])
def pieces(request, monkeypatch):
    """Every test twice: as small bodies are read (one parse), and with bodies over 80
    bytes parsed in pieces of ~40 bytes, as 10,000-row bodies are."""
    if request.param == "in pieces":
        monkeypatch.setattr(rows_module, "PIECE_BYTES", 40)
    return request.param


def old(raw: bytes):
    """What pydantic-core gives: the records, or the 400's text and detail."""
    try:
        return wire.decode(ADAPTER, raw)["records"]
    except BadRequest as exc:
        return ("400", exc.what, exc.detail)


def new(raw: bytes):
    """What the served path gives now: the fast decoder, else pydantic-core."""
    body = FAST.decode(raw)
    return old(raw) if body is None else list(body["records"])


def same(raw: bytes, accepted: bool) -> None:
    before, after = old(raw), new(raw)
    assert repr(after) == repr(before)  # repr: NaN, and -0.0 apart from 0.0
    assert (FAST.decode(raw) is not None) == accepted
    if accepted:  # the same values and types, not just equal ones
        assert [[type(v) for v in r.values()] for r in after] == [[float] * 3] * len(after)
        assert [list(r) for r in after] == [NAMES] * len(after)  # in column order
        assert [list(r.values()) for r in after] == [list(r.values()) for r in before]


def test_clean_bodies_are_decoded_as_pydantic_decodes_them():
    same(orjson.dumps({"records": GOOD}), accepted=True)
    same(json.dumps({"records": GOOD}, indent=2).encode(), accepted=True)  # spaces, \u escapes
    same(b' {"records" : [{"true":1,"a\\u00e9":2,"mean\\u0020radius":3}] } \n', accepted=True)
    same(b'{"records":[{"true":1,"a\xc3\xa9":2,"mean radius":3,"true":4}]}', accepted=True)
    same(b'{"records":[{"true":1,"a\xc3\xa9":2,"mean radius":3}],"records":[{"true":5,'
         b'"a\xc3\xa9":6,"mean radius":7}]}', accepted=True)  # duplicates: the last one, both


@pytest.mark.parametrize("value", [
    "true", "false", "null", '"1.5"', '"nan"', "[]", "[1.0]", "{}", '{"x":1}', "1e999", "-1e400",
    "NaN", "Infinity", "01", "1.", ".5", "+1", "0x10", "1" * 400])
def test_any_value_but_a_finite_number_is_declined_and_refused_as_before(value):
    for column in NAMES:
        row = ",".join(f'"{n}":{value if n == column else "1.5"}' for n in NAMES)
        raw = ('{"records":[{"mean radius":1,"a\u00e9":2,"true":3},{' + row + "}]}").encode()
        same(raw, accepted=False)


@pytest.mark.parametrize("raw", [
    b'{"records":[]}', b'{"records":{}}', b'{"records":null}', b"[]", b'"records"', b"",
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"true":3}],"extra":1}',
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2}]}',                       # a column missing
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"true":3,"x":4}]}',        # a key unknown
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"x":3}]}',                 # as many keys, wrong
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"True":3}]}',
    b'{"records":[[1,2,3]]}', b'{"records":["abc"]}', b'{"records":[1]}', b'{"records":[null]}',
    b'\xef\xbb\xbf{"records":[{"mean radius":1,"a\xc3\xa9":2,"true":3}]}',  # a BOM
    b'{"records":[{"mean radius":1,"a\xe9":2,"true":3}]}',                  # not UTF-8
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"true":3}]} x',
    b'{"records":[{"mean radius":1,"a\xc3\xa9":2,"true":3},]}',
])
def test_other_shapes_are_declined_and_refused_as_before(raw):
    same(raw, accepted=False)


def test_too_many_records_are_declined_and_refused_as_before():
    row = {"mean radius": 1.0, "a\u00e9": 2.0, "true": 3.0}
    same(orjson.dumps({"records": [row] * wire.MAX_RECORDS}), accepted=True)
    same(orjson.dumps({"records": [row] * (wire.MAX_RECORDS + 1)}), accepted=False)


def test_random_damage_to_a_body_never_changes_what_comes_back():
    rng = random.Random(14)
    tokens = ["true", "false", "null", '"2"', "[]", "{}", "7", "-0", "1e999", "2.5e-3",
              "123456789012345678901", '"mean radius"']
    for _ in range(300):
        rows = [{n: rng.uniform(-1e6, 1e6) for n in NAMES} for _ in range(rng.randint(1, 5))]
        text = orjson.dumps({"records": rows}).decode()
        for _ in range(rng.randint(0, 2)):
            i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
            text = text[:i] + rng.choice(tokens + [""]) + text[j:]
        raw = text.encode()
        assert repr(new(raw)) == repr(old(raw)), raw


def test_rows_read_as_the_records_they_hold():
    rows = FAST.decode(orjson.dumps({"records": GOOD}))["records"]
    assert isinstance(rows, Rows) and len(rows) == 3
    records = old(orjson.dumps({"records": GOOD}))
    assert list(rows) == records and rows[1] == records[1] and rows[-2:] == records[-2:]
    assert rows.values.shape == (3, 3) and rows.values.dtype == np.float64


def test_only_non_nullable_float_columns_take_the_decoder():
    assert FAST.usable
    for columns in [(ColumnSpec("x", "float", True),), (ColumnSpec("n", "integer", False),),
                    COLUMNS + (ColumnSpec("s", "string", False),), ()]:
        decoder = FloatBodies(columns, wire.MAX_RECORDS)
        assert not decoder.usable and decoder.decode(b'{"records":[{"x":1.0}]}') is None
    one = FloatBodies((ColumnSpec("x", "float", False),), wire.MAX_RECORDS)
    assert list(one.decode(b'{"records":[{"x":1},{"x":2.5}]}')["records"]) == [
        {"x": 1.0}, {"x": 2.5}]


def test_a_large_body_goes_through_the_decoder_and_a_declined_one_to_pydantic():
    seen = []

    def threaded(body):
        seen.append(type(body["records"]))
        return b"{}"

    route = wire.DirectRoute(ADAPTER, None, threaded, FAST.decode)
    wire._decoded_then(route, orjson.dumps({"records": GOOD}))
    declining = wire.DirectRoute(ADAPTER, None, threaded, lambda raw: None)
    wire._decoded_then(declining, orjson.dumps({"records": GOOD}))
    assert seen == [Rows, list]
    with pytest.raises(BadRequest, match="records.0.true"):
        wire._decoded_then(route, orjson.dumps({"records": [{**GOOD[0], "true": True}]}))


def test_a_frame_from_rows_is_a_copy_and_the_audit_log_gets_the_array(tmp_path):
    """The notebook's code may change X in place: what is audited is what came in."""

    def doubling(model, X):
        X.iloc[:, 0] *= 2  # in place
        return X.iloc[:, 0]

    maker = FrameMaker(COLUMNS)
    rows = FAST.decode(orjson.dumps({"records": GOOD}))["records"]
    assert maker.array(rows) is rows.values and maker.in_order(rows)
    X = maker(rows, maker.array(rows))
    X.iloc[0, 0] = -1.0
    assert rows.values[0, 0] == 14.2
    settings = Settings.from_env()
    settings = type(settings)(**{**vars(settings), "audit_url": f"sqlite:///{tmp_path}/a.db",
                                 "drift": False})
    contract = SimpleNamespace(expected=[], notebook_sha256=None, pii=None, cost_per_call=None)
    serving = Serving(model_tag="m:v1", contract=contract,
                      predictor=Predictor(None, Marked(model=doubling)), to_frame=maker,
                      profile=None, settings=settings)
    try:
        answers = [serving.predict(records)["predictions"]
                   for records in (rows, old(orjson.dumps({"records": GOOD})))]
        assert answers[0] == answers[1] and answers[0][0]["prediction"] == 28.4
        stored = [json.loads(r) for (r,) in _inputs(tmp_path / "a.db")]
        assert stored[0] == stored[1] == {"columns": NAMES, "rows": [
            list(r.values()) for r in old(orjson.dumps({"records": GOOD}))]}
    finally:
        serving.close()


def _inputs(db):
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT input FROM nb2prod_audit ORDER BY created_at").fetchall()


def test_a_large_body_is_parsed_in_pieces_with_the_values_of_one_parse(pieces):
    rng = random.Random(5)
    records = [{n: rng.uniform(-1e3, 1e3) for n in NAMES} for _ in range(wire.MAX_RECORDS)]
    raw = json.dumps({"records": records}, indent=rng.choice([None, 1])).encode()
    assert len(raw) > 2 * rows_module.PIECE_BYTES
    split = FAST._in_pieces(raw)
    assert split is not None, "the body was not split"
    assert split.tobytes() == FAST._block(orjson.loads(raw)["records"]).tobytes()
    same(raw, accepted=True)


def test_a_cut_inside_a_string_falls_back_to_one_parse(monkeypatch):
    # keys that look like the place two records meet: a cut there cannot parse
    columns = (ColumnSpec('a}, {"b', "float", False), ColumnSpec("c}\n,{", "float", False))
    decoder = FloatBodies(columns, wire.MAX_RECORDS)
    adapter = wire.predict_request(record_type(columns, "G"), "G")
    body = {"records": [{'a}, {"b': float(i), "c}\n,{": 1.5} for i in range(40)]}
    raw = json.dumps(body).encode()
    expected = wire.decode(adapter, raw)["records"]
    split = set()
    for size in range(16, 400, 7):  # cuts at every kind of place
        monkeypatch.setattr(rows_module, "PIECE_BYTES", size)
        split.add(decoder._in_pieces(raw) is not None)
        got = decoder.decode(raw)
        assert got is not None and list(got["records"]) == expected, size
    assert split == {True, False}  # some sizes cut only between records, some in a key
    # a string value holding a whole record is refused either way
    bad = raw.replace(b"1.5", b'"1.5}, {\\"x\\": 1"', 1)
    assert decoder.decode(bad) is None
    with pytest.raises(BadRequest):
        wire.decode(adapter, bad)
