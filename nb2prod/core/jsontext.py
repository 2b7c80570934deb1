"""JSON-ready scalars and compact JSON text, NaN as null, without importing pandas.

The audit log writes through ``dumps``; ``bentoml serve``'s arbiter opens it at start-up
and has no other use for pandas (~0.3 s to import). A pandas value (``NaT``, a
``Timestamp``) can only reach here once pandas is imported, so ``scalar`` looks for it in
``sys.modules`` instead of importing it.
"""

from __future__ import annotations

import math
import sys
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson


def scalar(value: Any) -> Any:
    """A JSON-ready Python scalar: numpy types unboxed, NaN/NaT as None, times as ISO."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None:
        return None
    pd = sys.modules.get("pandas")
    if pd is not None:
        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
    return value


# orjson writes NaN and infinity as null (PostgreSQL refuses them in JSON), and writes
# floats several times faster than json: the audit log encodes every input row.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``, NaN/infinity as null. What orjson cannot write
    (pandas timestamps, NaT, other objects) is converted first by ``jsonable``."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return orjson.dumps(jsonable(value), option=_OPTIONS).decode()


def jsonable(value: Any) -> Any:
    """``value`` with numpy unboxed, NaN/infinity as None and dates as ISO text, nested."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    value = scalar(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value.isoformat() if isinstance(value, (date, datetime)) else value
