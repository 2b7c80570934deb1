"""Served-side drift monitoring: a bounded rolling window of recent rows, scored by PSI.

``DriftMonitor`` reads the reference profile that ``nb2prod.authoring.profile.profile`` stored with
the model version (its format is documented there), maps every observed row to one bin
per feature (``Binner``, in ``bins.py``), and compares the window's bin shares with the
reference's.

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
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nb2prod.runtime.bins import FORMAT, OTHER, Binner, json_key

__all__ = ["EPSILON", "FORMAT", "OTHER", "Binner", "DriftMonitor", "json_key", "psi"]

log = logging.getLogger("nb2prod")

EPSILON = 1e-4


def psi(reference: Any, window: Any, eps: float = EPSILON) -> float:
    """PSI between two share vectors over the same bins (see the module docstring)."""
    p = np.maximum(np.asarray(reference, dtype=float), eps)
    q = np.maximum(np.asarray(window, dtype=float), eps)
    return float(np.sum((q - p) * np.log(q / p)))


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

    def bins(self, floats: pd.DataFrame | None, records: Sequence[dict[str, Any]]) -> np.ndarray:
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
