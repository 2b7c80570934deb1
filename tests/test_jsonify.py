"""Model outputs as JSON-ready rows (core/jsonify.py): one dict per row, NaN found."""

import numpy as np
import pandas as pd
import pytest

from nb2prod.core.jsonify import rows, rows_and_nan


@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_a_frame_of_any_width_gives_one_dict_per_row_in_column_order(width):
    names = ["label", "probability", "confidence"][:width]
    frame = pd.DataFrame({n: [i * 0.5 + j for i in range(4)] for j, n in enumerate(names)},
                         index=range(4))
    got, nan = rows_and_nan(frame, 4)
    assert got == [{n: i * 0.5 + j for j, n in enumerate(names)} for i in range(4)]
    assert [list(r) for r in got] == [names] * 4 and not nan.any()


def test_nan_is_null_and_marked_and_a_repeated_name_keeps_its_last_value():
    frame = pd.DataFrame([[1, np.nan], [0, 0.25]], columns=["label", "probability"])
    got, nan = rows_and_nan(frame, 2)
    assert got == [{"label": 1, "probability": None}, {"label": 0, "probability": 0.25}]
    assert nan.tolist() == [True, False]
    twice = pd.DataFrame([[1, 2.5]], columns=["x", "x"])
    assert rows(twice, 1) == [{"x": 2.5}] == [dict(zip(["x", "x"], [1, 2.5]))]
    assert type(rows(frame, 2)[1]["label"]) is int  # numpy unboxed


def test_the_wrong_number_of_rows_is_an_error():
    with pytest.raises(ValueError, match="returned 2 rows for 3 inputs"):
        rows(pd.DataFrame({"a": [1, 2], "b": [3, 4]}), 3)
