"""Reference profiles for drift monitoring, drawn from the training data at save time.

``save_model`` stores ``profile(reference)`` with the model version; the served
``nb2prod.runtime.drift.DriftMonitor`` compares recent requests with it. A profile is
plain JSON (strict: no NaN or Infinity), deterministic for the same data, and small:
a few hundred bytes per feature whatever the number of reference rows::

    {
      "format": "nb2prod.authoring.profile/1",
      "rows": 455,                      # reference rows
      "bins": 10, "top_k": 50,          # the settings that made it
      "features": {                     # in the frame's column order
        "mean radius": {
          "kind": "numeric",
          "edges": [10.26, 11.13, 11.75, 12.34, 13.0, 13.85, 15.04, 17.06, 19.53],
          "proportions": [0.0989, 0.1011, ...],   # len(edges) + 1 value bins
          "null": 0.0
        },
        "smoker": {
          "kind": "categorical",
          "categories": ["no", "yes"],             # most frequent first, at most top_k
          "proportions": [0.81, 0.18],
          "other": 0.0,                            # every category past top_k
          "null": 0.01
        }
      },
      "skipped": {"signup": "datetime64[us]"}      # columns not monitored, with their dtype
    }

Numeric bins. ``edges`` are the inner cut points, strictly increasing; the outer bins
are open-ended, so ``len(edges) + 1`` bins cover the real line: bin 0 is
``(-inf, edges[0])``, bin ``i`` is ``[edges[i-1], edges[i])``, the last is
``[edges[-1], +inf)`` — a value's bin is ``searchsorted(edges, x, side="right")``.
The cut points are the reference's ``1/bins … (bins-1)/bins`` quantiles (deciles by
default, taken at observed values), deduplicated. A cut point that holds at least
``1 / (2 · bins)`` of the reference by itself (an atom: the 0 of a mostly-zero column,
each value of a discrete or constant column) is followed by ``nextafter(v, +inf)``, so
the value gets its own bin ``[v, v]`` and values just above it land elsewhere: a
constant column ``c`` has bins ``< c``, ``= c``, ``> c``. Infinite values count in the
outer bins; NaN and None in ``null``.

Categorical bins (strings, booleans, categoricals, objects): the ``top_k`` most
frequent values, ties broken by their text; everything else in the reference — and any
value the reference never had — is ``other``. Categories are JSON scalars: numpy
scalars become Python ones and other objects their ``str()``.

Proportions are shares of all reference rows (nulls included), rounded to 6 decimals:
a feature's ``proportions``, ``other`` and ``null`` add up to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types

from nb2prod.runtime.drift import FORMAT, json_key

DECIMALS = 6


def profile(df: pd.DataFrame, *, bins: int = 10, top_k: int = 50) -> dict[str, Any]:
    """The drift reference profile of ``df`` (see the module docstring for its format).

    ``bins`` quantile bins per numeric column, the ``top_k`` most frequent values per
    categorical one. Datetime, timedelta and complex columns are listed in ``skipped``.
    """
    if not 2 <= bins <= 100:
        raise ValueError(f"bins must be between 2 and 100; got {bins}")
    if not 1 <= top_k <= 10_000:
        raise ValueError(f"top_k must be between 1 and 10000; got {top_k}")
    if len(df) == 0:
        raise ValueError("cannot profile an empty reference: it has no rows")
    features: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, column in df.items():
        kind = _kind(column.dtype)
        if kind == "numeric":
            features[str(name)] = _numeric(column, bins)
        elif kind == "categorical":
            features[str(name)] = _categorical(column, top_k)
        else:
            skipped[str(name)] = str(column.dtype)
    return {
        "format": FORMAT,
        "rows": len(df),
        "bins": bins,
        "top_k": top_k,
        "features": features,
        "skipped": skipped,
    }


def _kind(dtype: Any) -> str:
    """``numeric``, ``categorical`` or ``skipped`` for a column's dtype."""
    if isinstance(dtype, pd.CategoricalDtype) or types.is_bool_dtype(dtype):
        return "categorical"
    if (
        types.is_datetime64_any_dtype(dtype)
        or types.is_timedelta64_dtype(dtype)
        or types.is_complex_dtype(dtype)
    ):
        return "skipped"
    return "numeric" if types.is_numeric_dtype(dtype) else "categorical"


def _share(count: int | np.integer, rows: int) -> float:
    return round(int(count) / rows, DECIMALS)


def _numeric(column: pd.Series, bins: int) -> dict[str, Any]:
    """Quantile edges (atoms in their own bin), shares per bin and the null share."""
    x = column.to_numpy(dtype=float, na_value=np.nan)
    nulls = np.isnan(x)
    finite = np.sort(x[np.isfinite(x)])
    edges: list[float] = []
    if finite.size:
        # inverted_cdf takes observed values, so an atom's cut point is the atom itself.
        cuts = np.unique(np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf"))
        mass = (
            np.searchsorted(finite, cuts, side="right") - np.searchsorted(finite, cuts, side="left")
        ) / len(x)
        for cut, share in zip(cuts.tolist(), mass.tolist()):
            edges.append(cut)
            if share >= 1 / (2 * bins):
                edges.append(float(np.nextafter(cut, np.inf)))
        edges = sorted(set(edges))  # nextafter(v) can meet the next cut point
    counts = np.bincount(np.searchsorted(edges, x[~nulls], side="right"), minlength=len(edges) + 1)
    return {
        "kind": "numeric",
        "edges": edges,
        "proportions": [_share(c, len(x)) for c in counts],
        "null": _share(nulls.sum(), len(x)),
    }


def _categorical(column: pd.Series, top_k: int) -> dict[str, Any]:
    """The ``top_k`` most frequent values' shares, the rest as ``other``, and nulls."""
    counts: dict[Any, int] = {}
    for value, count in column.value_counts(dropna=True).items():
        if count:  # a categorical dtype lists its unused categories with count 0
            key = json_key(value)
            counts[key] = counts.get(key, 0) + int(count)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], type(kv[0]).__name__, str(kv[0])))
    top, rest = ranked[:top_k], ranked[top_k:]
    rows = len(column)
    return {
        "kind": "categorical",
        "categories": [k for k, _ in top],
        "proportions": [_share(c, rows) for _, c in top],
        "other": _share(sum(c for _, c in rest), rows),
        "null": _share(column.isna().sum(), rows),
    }
