import math

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from nb2prod.runtime.schema import FrameMaker, record_type
from nb2prod.spec import ColumnSpec

COLUMNS = (ColumnSpec("age", "integer", False), ColumnSpec("income", "float", True),
           ColumnSpec("region", "category", False, ("n", "s")),
           ColumnSpec("member", "boolean", False), ColumnSpec("note", "string", True))
Records = TypeAdapter(list[record_type(COLUMNS, "People")])


def test_records_are_typed_and_strict_about_columns():
    ok = Records.validate_python([{"age": 3, "income": None, "region": "n", "member": True,
                                   "note": None}])
    assert ok == [{"age": 3, "income": None, "region": "n", "member": True, "note": None}]
    with pytest.raises(ValidationError) as e:
        Records.validate_python([{"age": "x", "income": float("inf"), "region": "w",
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
