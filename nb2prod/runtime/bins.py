"""Rows to drift bins: the ``Binner`` that ``DriftMonitor`` (``drift.py``) counts with.

A reference profile (``nb2prod.authoring.profile.profile``, format ``FORMAT``) gives
every feature its bins: numeric edges or categories, then ``__other__`` for categories,
then null. ``Binner`` lays every feature's bins end to end (flat, global indices), so a
row's indices also say which feature they belong to and one ``bincount`` counts every
feature at once.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

FORMAT = "nb2prod.authoring.profile/1"
OTHER = "__other__"


def json_key(value: Any) -> Any:
    """A category as a JSON scalar: numpy scalars become Python ones, other objects ``str``.

    Shared by the profile (build side) and the monitor so both name categories alike.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


class Binner:
    """Maps DataFrame rows to flat bin indices, one column per profiled feature.

    Every feature owns a contiguous range of the flat bins (its value bins, then
    ``__other__`` for categories, then null), so a row's indices also say which
    feature they belong to and one ``bincount`` counts every feature at once.
    """

    def __init__(self, profile: dict[str, Any]):
        if profile.get("format") != FORMAT:
            raise ValueError(
                f"not a drift profile in format {FORMAT!r} (got "
                f"{profile.get('format')!r}); make it with "
                "nb2prod.authoring.profile.profile"
            )
        feats = profile["features"]
        numeric = [n for n, f in feats.items() if f["kind"] == "numeric"]
        categorical = [n for n, f in feats.items() if f["kind"] == "categorical"]
        self.numeric, self.categorical = numeric, categorical
        # Ring columns: numeric features first, so their bins come from one block.
        self.names = numeric + categorical
        self.order = list(feats)  # the reference frame's column order, for reports
        self.kinds = {n: feats[n]["kind"] for n in self.names}
        shares = [_reference_shares(feats[n]) for n in self.names]
        sizes = np.array([len(s) for s in shares], dtype=np.int64)
        self.starts = np.cumsum(sizes) - sizes
        self.reference = np.concatenate(shares) if shares else np.zeros(0)
        self.bins = int(sizes.sum())
        self.dtype = np.uint16 if self.bins < 2**16 else np.uint32
        self.labels = {n: _labels(feats[n]) for n in self.names}

        edges = [feats[n]["edges"] for n in numeric]
        width = max((len(e) for e in edges), default=0)
        if width > 255:
            raise ValueError(f"a numeric feature has {width} edges; at most 255 are supported")
        # (edges, 1, features), NaN-padded: x >= NaN is False, so padding adds nothing.
        self.edges = np.full((width, 1, len(numeric)), np.nan)
        for j, e in enumerate(edges):
            self.edges[: len(e), 0, j] = e
        self.num_start = self.starts[: len(numeric)].astype(self.dtype)
        self.num_null = (self.starts[: len(numeric)] + sizes[: len(numeric)] - 1).astype(self.dtype)
        self.lookups = [
            {c: int(self.starts[j]) + i for i, c in enumerate(feats[n]["categories"])}
            for j, n in enumerate(categorical, start=len(numeric))
        ]
        cat_sizes = sizes[len(numeric) :]
        self.cat_null = self.starts[len(numeric) :] + cat_sizes - 1
        self.cat_other = self.cat_null - 1
        self._seen: tuple[Any, list[Any], np.ndarray, bool] | None = None

    def __call__(self, X: pd.DataFrame) -> np.ndarray:
        """``(len(X), features)`` flat bin indices for the rows of ``X``."""
        positions, identity = self._positions(X)
        if not self.categorical:
            try:  # all-numeric: one float block, no per-column work
                block = X.to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):  # an unprofiled non-numeric column
                block = X.to_numpy(dtype=object)
        else:  # one object block: per-column access costs ~10 µs a column
            block = X.to_numpy(dtype=object)
        return self.block(block if identity else block[:, positions])

    def records(self, records: Sequence[dict[str, Any]]) -> np.ndarray:
        """Flat bin indices for JSON-like records; a missing key counts as null."""
        values = np.fromiter(
            (r.get(name) for r in records for name in self.names),
            dtype=object,
            count=len(records) * len(self.names),
        )
        return self.block(values.reshape(len(records), len(self.names)))

    def block(self, values: np.ndarray) -> np.ndarray:
        """Flat bins for an ``(n, features)`` array whose columns follow ``names``."""
        out = np.empty(values.shape, dtype=self.dtype)
        k = len(self.numeric)
        if k:
            numeric = values[:, :k]
            self._numeric_bins(numeric if numeric.dtype == float else _floats(numeric), out[:, :k])
        if self.categorical:
            self._categorical_bins(values[:, k:], out[:, k:])
        return out

    def _categorical_bins(self, values: np.ndarray, out: np.ndarray) -> None:
        """Known category, ``__other__`` or null for an ``(n, categorical)`` object block."""
        gets = [lookup.get for lookup in self.lookups]
        columns = values.T.tolist()  # plain lists: the fastest thing to loop over
        try:  # -1 marks a null or an unknown value
            codes = [[get(v, -1) for v in col] for get, col in zip(gets, columns)]
        except TypeError:  # an unhashable value somewhere: cannot be a known category
            codes = [[_get(get, v) for v in col] for get, col in zip(gets, columns)]
        codes = np.array(codes, dtype=np.int64).reshape(len(gets), len(values)).T
        missed = np.argwhere(codes < 0)
        if missed.size:
            nulls = pd.isna(values)
            for i, j in missed.tolist():
                codes[i, j] = (
                    self.cat_null[j]
                    if nulls[i, j]
                    else _get(gets[j], json_key(values[i, j]), self.cat_other[j])
                )
        out[:] = codes

    def _numeric_bins(self, values: np.ndarray, out: np.ndarray) -> None:
        """Numeric features' flat bins into ``out``; NaN goes to the null bin."""
        # bin = how many edges are <= x, i.e. searchsorted(edges, x, side="right"), for
        # every feature in one broadcast: a searchsorted per column costs ~2 µs each.
        # uint8 holds the count: profile() allows at most 2 * 99 edges. Chunks of rows
        # keep the (edges, rows, features) temporary near 1 MB for big requests.
        step = max(1, 2**20 // max(1, self.edges.size))
        for i in range(0, len(values), step):
            counts = (values[None, i : i + step] >= self.edges).sum(axis=0, dtype=np.uint8)
            np.add(counts, self.num_start, out=out[i : i + step], casting="unsafe")
        nan = np.isnan(values)
        if nan.any():
            np.copyto(out, np.broadcast_to(self.num_null, out.shape), where=nan)

    def _positions(self, X: pd.DataFrame) -> tuple[np.ndarray, bool]:
        """Where each feature of ``names`` is in ``X``, and whether that is in order.

        Cached for the last column layout: the service's frames all share one.
        """
        seen = self._seen
        if seen is not None and (X.columns is seen[0] or X.columns.tolist() == seen[1]):
            return seen[2], seen[3]
        labels = X.columns.tolist()
        where = {str(c): i for i, c in enumerate(labels)}
        missing = [n for n in self.names if n not in where]
        if missing:
            raise ValueError(
                f"drift monitor: column(s) {missing} of the reference profile "
                "are missing from the observed frame"
            )
        positions = np.array([where[n] for n in self.names], dtype=np.intp)
        identity = bool(np.array_equal(positions, np.arange(len(labels))))
        self._seen = (X.columns, labels, positions, identity)  # one atomic assignment
        return positions, identity


def _reference_shares(feature: dict[str, Any]) -> np.ndarray:
    extra = [feature["other"]] if feature["kind"] == "categorical" else []
    return np.array(list(feature["proportions"]) + extra + [feature["null"]], dtype=float)


def _labels(feature: dict[str, Any]) -> list[str]:
    """Readable bin names: ``[a, b)`` ranges, ``= v`` for a value's own bin, categories."""
    if feature["kind"] == "categorical":
        return [str(c) for c in feature["categories"]] + [OTHER, "null"]
    bounds = [-math.inf] + list(feature["edges"]) + [math.inf]
    labels = []
    for before, lo, hi in zip([None] + bounds, bounds, bounds[1:]):
        if np.nextafter(lo, math.inf) == hi:  # an atom's own bin [v, v]
            labels.append(f"= {lo!r}")
        elif before is not None and np.nextafter(before, math.inf) == lo:  # after an atom
            labels.append(f"({before!r}, {hi!r})")
        else:
            labels.append(f"[{lo!r}, {hi!r})")
    return labels + ["null"]


def _floats(values: np.ndarray) -> np.ndarray:
    """An object block as floats, every null kind (None, NaN, pd.NA, NaT) as NaN."""
    try:
        return values.astype(float)  # None and NaN convert; pd.NA and NaT raise
    except TypeError:
        values = values.copy()
        values[pd.isna(values)] = np.nan
        return values.astype(float)


def _get(get: Any, value: Any, default: int = -1) -> int:
    """``get(value, default)``, with ``default`` for an unhashable value."""
    try:
        return get(value, default)
    except TypeError:
        return default
