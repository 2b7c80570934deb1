"""Served-side drift monitoring: a bounded rolling window of recent rows, scored by PSI.

``DriftMonitor`` reads the reference profile that ``nb2prod.authoring.profile.profile`` stored with
the model version (its format is documented there), maps every observed row to one bin
per feature, and compares the window's bin shares with the reference's.

The window is a ring buffer of the last ``window`` rows' bin indices, one ``uint16``
per feature (``uint32`` past 65,535 bins in all: indices are global, not per feature,
so one ``bincount`` counts every feature), plus a running count per bin. A row entering
the ring increments its bins and the row it overwrites decrements its own, so:

- memory is ``window × features × 2`` bytes whatever the traffic (300 KB for 10,000
  rows of 15 features) and never grows;
- the window is exactly the last ``window`` rows, so ``min_rows`` and every share mean
  rows, not a guess from time buckets (a ring of per-bucket counts would hold fewer
  bytes, but it forgets whole buckets at once and its row count depends on traffic);
- ``report()`` costs one pass over the counts, not over the window.

PSI (population stability index) of one feature, over its bins ``i`` including the
null bin (and ``__other__`` for categories), with ``p_i`` the reference share,
``q_i`` the window share and both floored at ``EPSILON`` (1e-4) so that an empty bin
stays finite::

    PSI = Σ_i (q_i − p_i) · ln(q_i / p_i)

With the floor, 1 % of the window in a bin the reference never saw (an unknown
category, a value below a constant column) adds 0.046, and 5 % adds 0.31.

Common reading: below 0.1 stable, 0.1 to 0.2 moving, above 0.2 (the default
threshold) drifted. A feature whose PSI exceeds the threshold is ``drift``; with
fewer than ``min_rows`` rows in the window every feature is ``insufficient_data``.
Statuses are re-evaluated every ``check_every`` observed rows and on every
``report()``; a feature entering ``drift`` logs one warning on the ``nb2prod`` logger
and is returned by that ``observe()`` call, and nothing more until it has left
``drift`` (logged at info) and enters it again, or has stayed in it for ``remind_s``
(an hour); features entering drift together share one line (a shifted batch used to log
one line per feature at once). With several workers, ``merged`` reports their windows
as one.

No Great Expectations, no scikit-learn: numpy and pandas only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("nb2prod")

FORMAT = "nb2prod.authoring.profile/1"
EPSILON = 1e-4
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


def psi(reference: Any, window: Any, eps: float = EPSILON) -> float:
    """PSI between two share vectors over the same bins (see the module docstring)."""
    p = np.maximum(np.asarray(reference, dtype=float), eps)
    q = np.maximum(np.asarray(window, dtype=float), eps)
    return float(np.sum((q - p) * np.log(q / p)))


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

    def records(self, records: list[dict[str, Any]]) -> np.ndarray:
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


class DriftMonitor:
    """Rolling-window drift of served inputs against a model version's reference profile.

    ``observe()`` each request's DataFrame (thread-safe, vectorised, O(rows) work, no
    allocation that outlives the call); ``report()`` for ``GET /drift`` and gauges.
    """

    def __init__(
        self,
        profile: dict[str, Any],
        *,
        window: int = 10_000,
        threshold: float = 0.2,
        min_rows: int = 500,
        check_every: int = 100,
        remind_s: float = 3600.0,
    ):
        if window < 1 or not 1 <= min_rows <= window:
            raise ValueError(
                f"need 1 <= min_rows <= window; got min_rows={min_rows}, window={window}"
            )
        if threshold <= 0 or check_every < 1:
            raise ValueError(
                f"need threshold > 0 and check_every >= 1; got "
                f"threshold={threshold}, check_every={check_every}"
            )
        self.binner = Binner(profile)
        self.window, self.threshold = window, float(threshold)
        self.min_rows, self.check_every = min_rows, check_every
        self._ring = np.zeros((window, len(self.binner.names)), dtype=self.binner.dtype)
        self._counts = np.zeros(self.binner.bins, dtype=np.int64)
        self._next = self._filled = self._seen = self._unchecked = 0
        self._status = {n: "insufficient_data" for n in self.binner.names}
        self._psi: dict[str, float | None] = {n: None for n in self.binner.names}
        self._reference = np.maximum(self.binner.reference, EPSILON)
        self.remind_s = remind_s
        self._warned = {n: -math.inf for n in self.binner.names}  # monotonic time
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held by the window and its counts; fixed at construction."""
        return self._ring.nbytes + self._counts.nbytes

    def observe(self, X: pd.DataFrame) -> list[str]:
        """Add ``X``'s rows to the window; the features that entered ``drift`` just now.

        Almost always ``[]``: statuses are re-evaluated every ``check_every`` rows.
        Raises ``ValueError`` when a profiled column is missing from ``X``.
        """
        n = len(X)
        if n == 0:
            return []
        # Only the newest `window` rows can stay in the window.
        return self._add(self.binner(X if n <= self.window else X.iloc[n - self.window :]), n)

    def observe_records(self, records: list[dict[str, Any]]) -> list[str]:
        """``observe`` for the request's records themselves; a missing key counts as null.

        Same bins as ``observe`` on the frame made from them, without pandas: several
        times cheaper when some columns are strings or categories (see bench/drift.py).
        """
        if not records:
            return []
        return self._add(self.binner.records(records[-self.window :]), len(records))

    def bins(self, floats: pd.DataFrame | None, records: list[dict[str, Any]]) -> np.ndarray:
        """The newest ``window`` rows' bins, for ``add`` later: from ``floats``, the
        request's frame when the caller knows its columns are all float64 (one array, no
        per-value work; asking pandas for ``dtypes`` costs more than binning), else from
        ``records``."""
        if floats is not None and not self.binner.categorical:
            n = len(floats)
            return self.binner(floats if n <= self.window else floats.iloc[n - self.window :])
        return self.binner.records(records[-self.window :])

    def add(self, flat: np.ndarray, n: int) -> list[str]:
        """Count ``n`` observed rows whose newest ones ``bins`` binned; as ``observe``."""
        return self._add(flat, n) if n else []

    def _add(self, flat: np.ndarray, n: int) -> list[str]:
        """Write binned rows, count ``n`` observed rows, re-evaluate when it is time."""
        with self._lock:
            self._write(flat)
            self._seen += n
            self._unchecked += n
            if self._unchecked < self.check_every:
                return []
            self._unchecked = 0
            return self._evaluate()

    def report(self) -> dict[str, Any]:
        """Per-feature PSI and status, the overall status and the window's size, as data.

        ``{"status", "rows", "window", "observed", "threshold", "min_rows", "drifting",
        "features": {name: {"kind", "psi", "status"}}}``; ``psi`` is None while the
        window is empty. Cheap (one pass over the bin counts): fine for a gauge timer.
        A feature entering ``drift`` here is logged here, and not returned by ``observe``.
        """
        with self._lock:
            self._unchecked = 0
            self._evaluate()
            status, scores = dict(self._status), dict(self._psi)
            rows, seen = self._filled, self._seen
        return self._summary(status, scores, rows, seen, self.window)

    def snapshot(self) -> dict[str, Any]:
        """This window's bin counts and row counts, as JSON-ready data, for ``merged``
        in another process (one worker's part of a service-wide report)."""
        with self._lock:
            return {
                "counts": self._counts.tolist(),
                "rows": self._filled,
                "observed": self._seen,
            }

    def merged(self, snapshots: list[dict[str, Any]]) -> dict[str, Any]:
        """``report()`` over this window and other workers' ``snapshot()``s of the same
        profile, as one: bin counts and rows add up, so the service-wide window is each
        worker's last ``window`` rows together (``window`` in the answer is their sum).
        Logs nothing: each worker warns about its own window."""
        parts = [self.snapshot()] + [s for s in snapshots if len(s["counts"]) == self.binner.bins]
        counts = np.sum([np.asarray(s["counts"], dtype=np.int64) for s in parts], axis=0)
        rows = sum(int(s["rows"]) for s in parts)
        seen = sum(int(s["observed"]) for s in parts)
        status, scores = dict(self._status), dict(self._psi)
        if rows:
            for name, score in zip(self.binner.names, self._scores(counts, rows)):
                status[name] = self._judge(score, rows)
                scores[name] = round(score, 6)
        report = self._summary(status, scores, rows, seen, self.window * len(parts))
        report["workers"] = len(parts)
        return report

    def _summary(
        self,
        status: dict[str, str],
        scores: dict[str, float | None],
        rows: int,
        seen: int,
        window: int,
    ) -> dict[str, Any]:
        drifting = [n for n in self.binner.order if status[n] == "drift"]
        overall = "insufficient_data" if rows < self.min_rows else "drift" if drifting else "ok"
        return {
            "status": overall,
            "rows": rows,
            "window": window,
            "observed": seen,
            "threshold": self.threshold,
            "min_rows": self.min_rows,
            "drifting": drifting,
            "features": {
                n: {"kind": self.binner.kinds[n], "psi": scores[n], "status": status[n]}
                for n in self.binner.order
            },
        }

    def histogram(self, feature: str) -> dict[str, Any]:
        """One feature's bins: labels, reference shares and window shares (for debugging)."""
        if feature not in self.binner.kinds:
            raise KeyError(
                f"{feature!r} is not in the reference profile; profiled: {self.binner.names}"
            )
        j = self.binner.names.index(feature)
        labels = self.binner.labels[feature]
        span = slice(int(self.binner.starts[j]), int(self.binner.starts[j]) + len(labels))
        with self._lock:
            counts, rows = self._counts[span].copy(), self._filled
        return {
            "bins": labels,
            "reference": self.binner.reference[span].tolist(),
            "window": (counts / max(rows, 1)).tolist(),
            "rows": rows,
        }

    def _write(self, flat: np.ndarray) -> None:
        """Put ``flat``'s rows (at most ``window``) into the ring; keep counts in step."""
        W, n = self.window, len(flat)
        if n == 1:  # the common single-record request: no temporaries
            slot, row = self._next, flat[0]
            if self._filled == W:
                self._counts[self._ring[slot]] -= 1  # one bin per feature: no repeats
            else:
                self._filled += 1
            self._ring[slot] = row
            self._counts[row] += 1
            self._next = (slot + 1) % W
            return
        slots = (self._next + np.arange(n)) % W
        # Slots [0, filled) hold rows (all of them once the ring is full); the rest are empty.
        evicted = slots[slots < self._filled]
        if evicted.size:
            self._counts -= np.bincount(self._ring[evicted].ravel(), minlength=self.binner.bins)
        self._ring[slots] = flat
        self._counts += np.bincount(flat.ravel(), minlength=self.binner.bins)
        self._filled = min(W, self._filled + n)
        self._next = (self._next + n) % W

    def _scores(self, counts: np.ndarray, rows: int) -> list[float]:
        """PSI per feature (in ``binner.names`` order) of bin counts over ``rows`` rows."""
        p = self._reference
        q = np.maximum(counts / rows, EPSILON)
        return np.add.reduceat((q - p) * np.log(q / p), self.binner.starts).tolist()

    def _judge(self, score: float, rows: int) -> str:
        if rows < self.min_rows:
            return "insufficient_data"
        return "drift" if score > self.threshold else "ok"

    def _evaluate(self) -> list[str]:
        """Recompute PSI and statuses (lock held); log and return features entering drift.

        The features entering drift together are warned about in one line, each once
        per crossing; one that stays in drift is warned about again every ``remind_s``
        seconds (an hour by default), never per request."""
        if self._filled == 0 or not self.binner.names:
            return []
        entered: list[str] = []
        still: list[str] = []
        now = time.monotonic()
        for name, score in zip(self.binner.names, self._scores(self._counts, self._filled)):
            status = self._judge(score, self._filled)
            before = self._status[name]
            if status == "drift" and before != "drift":
                entered.append(name)
            elif status == "drift" and now - self._warned[name] >= self.remind_s:
                still.append(name)
            elif before == "drift" and status != "drift":
                log.info(
                    "drift: input %r is back to PSI %.3f <= %.3g over the last %d rows",
                    name,
                    score,
                    self.threshold,
                    self._filled,
                )
            self._status[name], self._psi[name] = status, round(score, 6)
        for names, how in ((entered, "has"), (still, f"still has, {self.remind_s:g}s on,")):
            if names:
                for name in names:
                    self._warned[name] = now
                log.warning(
                    "drift: input%s %s %s PSI > %.3g over the last %d rows",
                    "s" if len(names) > 1 else "",
                    ", ".join(f"{n!r} ({self._psi[n]:.3f})" for n in names),
                    how.replace("has", "have") if len(names) > 1 else how,
                    self.threshold,
                    self._filled,
                )
        return entered
