"""The request's record type, from a stored contract: one ``TypedDict`` per service.

Records are ``TypedDict``s so pydantic validates them into plain dicts (cheap to turn
into a DataFrame, ``schema.FrameMaker``) while ``/docs.json`` still documents every real
column and type. Apart from ``schema.py`` because the service's definition needs this
and not pandas: ``bentoml serve``'s arbiter defines the service too, and never predicts.

A categorical column is typed by its categories' JSON type, not as a closed set: a value
training never saw is a question for the input checks (the suite's value set, ``warn``
when drafted), not a schema 400. ``/docs.json`` lists the known values as ``examples``
and in the description.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional, Union

import numpy as np
from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from nb2prod.core.spec import ColumnSpec

# an integer column is int64 in the frame: JSON's larger integers are a 400, not a crash
_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_PYTHON = {"integer": _INT64, "boolean": bool, "string": str, "datetime": datetime}
_FINITE = Annotated[float, Field(allow_inf_nan=False)]
_SHOWN = 30  # known values listed in /docs.json per categorical column


def _field_type(col: ColumnSpec) -> Any:
    if col.dtype == "category" and col.categories:
        return _category_type(col)
    kind = _FINITE if col.dtype == "float" else _PYTHON.get(col.dtype, str)
    return Optional[kind] if col.nullable else kind


def _category_type(col: ColumnSpec) -> Any:
    """The JSON type of the column's categories, open to values training never had."""
    known = [v.item() if isinstance(v, np.generic) else v for v in col.categories or ()]
    # bool before int: True is an int to Python, but a JSON boolean is not a number
    kinds = sorted(
        {
            "boolean"
            if isinstance(v, bool)
            else "integer"
            if isinstance(v, int)
            else "float"
            if isinstance(v, float)
            else "string"
            for v in known
        }
    )
    types = [_FINITE if k == "float" else _PYTHON[k] for k in kinds]
    kind: Any = types[0] if len(types) == 1 else Union[tuple(types)]
    shown = ", ".join(map(str, known[:_SHOWN])) + (
        f", … ({len(known)} in all)" if len(known) > _SHOWN else ""
    )
    return Annotated[
        Optional[kind] if col.nullable else kind,
        Field(
            description=f"known values: {shown}; others are accepted and handled by the "
            "input checks",
            examples=known[:_SHOWN],
        ),
    ]


def record_type(columns: tuple[ColumnSpec, ...], name: str) -> type:
    """A TypedDict with one required key per column; unknown keys are refused."""
    record = TypedDict(f"{name}Record", {c.name: _field_type(c) for c in columns})  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return record
