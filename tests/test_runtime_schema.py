import math

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from nb2prod.core.spec import ColumnSpec
from nb2prod.runtime.records import record_type
from nb2prod.runtime.schema import FrameMaker

COLUMNS = (ColumnSpec("age", "integer", False), ColumnSpec("income", "float", True),
           ColumnSpec("region", "category", False, ("n", "s")),
           ColumnSpec("member", "boolean", False), ColumnSpec("note", "string", True))
Records = TypeAdapter(list[record_type(COLUMNS, "People")])


def test_records_are_typed_and_strict_about_columns():
    ok = Records.validate_python([{"age": 3, "income": None, "region": "n", "member": True,
                                   "note": None}])
    assert ok == [{"age": 3, "income": None, "region": "n", "member": True, "note": None}]
    with pytest.raises(ValidationError) as e:
        Records.validate_python([{"age": "x", "income": float("inf"), "region": 7,
                                  "member": True, "extra": 1}])
    locs = {err["loc"] for err in e.value.errors()}
    assert locs == {(0, "age"), (0, "income"), (0, "region"), (0, "note"), (0, "extra")}


def test_frames_keep_the_reference_order_and_dtypes():
    X = FrameMaker(COLUMNS)([{"note": "hi", "member": False, "region": "s", "income": 2.5,
                              "age": 4}])
    assert list(X.columns) == ["age", "income", "region", "member", "note"]
    assert X["region"].dtype == pd.CategoricalDtype(["n", "s"])
    assert X["age"].dtype == "int64" and X["member"].dtype == bool


def test_all_float_frames_take_the_fast_path_and_nulls_become_nan():
    cols = (ColumnSpec("a", "float", False), ColumnSpec("b", "float", True))
    maker = FrameMaker(cols)
    assert maker.all_float
    X = maker([{"b": None, "a": 1.0}, {"a": 2, "b": 3.5}])
    assert list(X.columns) == ["a", "b"] and X.dtypes.tolist() == ["float64", "float64"]
    assert math.isnan(X.loc[0, "b"]) and X.loc[1, "a"] == 2.0


def test_a_category_training_never_had_passes_the_schema_and_is_documented():
    [ok] = Records.validate_python([{"age": 3, "income": None, "region": "w", "member": True,
                                     "note": None}])
    assert ok["region"] == "w"  # the checks decide about it, not the schema
    for wrong in (7, ["n"], {"n": 1}, None):  # another type (or null, never seen) still is
        with pytest.raises(ValidationError) as e:
            Records.validate_python([{**ok, "region": wrong}])
        assert {err["loc"] for err in e.value.errors()} == {(0, "region")}
    region = Records.json_schema()["$defs"]["PeopleRecord"]["properties"]["region"]
    assert region["type"] == "string" and region["examples"] == ["n", "s"]
    assert "enum" not in region and region["description"].startswith("known values: n, s;")


def test_categories_of_other_json_types_keep_their_type():
    cols = (ColumnSpec("grade", "category", True, (1, 2, 3)),
            ColumnSpec("flag", "category", False, (False, True)))
    records = TypeAdapter(list[record_type(cols, "Graded")])
    assert records.validate_python([{"grade": 9, "flag": True}]) == [{"grade": 9, "flag": True}]
    assert records.validate_python([{"grade": None, "flag": False}])[0]["grade"] is None
    for bad in ({"grade": "one", "flag": True}, {"grade": 1, "flag": "maybe"}):
        with pytest.raises(ValidationError):
            records.validate_python([bad])


def test_an_unseen_category_reaches_the_checks_by_value_and_the_model_as_missing():
    maker = FrameMaker(COLUMNS)
    base = {"age": 4, "income": 2.5, "member": False, "note": None}
    X = maker([{**base, "region": "w"}, {**base, "region": "s"}, {**base, "region": "w"}])
    assert X["region"].tolist() == ["w", "s", "w"]  # what the checks see and report
    assert X["region"].cat.categories.tolist() == ["n", "s", "w"]
    model_input = maker.for_model(X)
    assert model_input["region"].dtype == pd.CategoricalDtype(["n", "s"])
    assert model_input["region"].isna().tolist() == [True, False, True]
    assert X["region"].tolist() == ["w", "s", "w"]  # for_model copies; X is unchanged


def test_frames_of_known_categories_go_to_the_model_as_they_are():
    maker = FrameMaker(COLUMNS)
    X = maker([{"age": 4, "income": None, "region": "n", "member": True, "note": "x"}])
    assert X["region"].dtype == pd.CategoricalDtype(["n", "s"])
    assert maker.for_model(X) is X
    floats = FrameMaker((ColumnSpec("a", "float", False),))
    X = floats([{"a": 1.0}])
    assert floats.for_model(X) is X


FLOATS = (ColumnSpec("a", "float", False), ColumnSpec("b", "float", True),
          ColumnSpec("c", "float", False))
NAMES = ["a", "b", "c"]


def test_records_in_another_order_or_with_other_keys_are_walked_by_the_audit_log():
    maker = FrameMaker(FLOATS)
    ordered = [dict(zip(NAMES, (1.0, 2.0, 3.0)))]
    assert maker.in_order(ordered) and maker.in_order(ordered * 2)
    assert not maker.in_order([dict(zip(NAMES[::-1], (3.0, 2.0, 1.0)))])
    assert not maker.in_order([*ordered, {**ordered[0], "extra": 1.0}])
    assert not maker.in_order([])
    assert FrameMaker((ColumnSpec("n", "integer", False),)).array([{"n": 1}]) is None
    X = maker(ordered)
    assert isinstance(X, pd.DataFrame) and X.columns.tolist() == NAMES


def test_a_frame_made_from_the_array_is_a_copy_the_audit_log_keeps_as_it_came():
    """The notebook's code may change X in place: the array stays what the request sent."""
    maker = FrameMaker(FLOATS)
    records = [dict(zip(NAMES, (1.0, None, 3.0))), dict(zip(NAMES, (4.0, 5.0, 6.0)))]
    values = maker.array(records)
    assert values.shape == (2, 3) and math.isnan(values[0, 1])
    X = maker(records, values)
    X.iloc[0, 0] = -1.0
    X["c"] *= 2
    assert values.tolist()[1] == [4.0, 5.0, 6.0] and values[0, 0] == 1.0
    assert maker(records).equals(maker(records, values))
