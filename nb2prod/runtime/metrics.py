"""Prometheus metrics a served notebook exposes on BentoML's ``/metrics``.

Defined once per process at import (a second definition would be a duplicate-metric
error); BentoML's multiprocess collector publishes them. Gauges say how to combine
worker processes: drift takes the worst worker, quality the most recent update.
Fallback rate is ``rate(nb2prod_predictions_total{source="fallback"}[5m]) /
rate(nb2prod_predictions_total[5m])``; ``nb2prod_fallback_ratio`` is the same over
each worker's last 1,000 rows, for dashboards without PromQL.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections import deque
from itertools import islice
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter(
    "nb2prod_predictions",
    "Rows answered, by source and reason",
    ["model_version", "source", "reason"],
)
CHECK_FAILURES = Counter(
    "nb2prod_check_failures",
    "Rows failing an input check, by check and severity",
    ["model_version", "check", "severity"],
)
LATENCY = Histogram(
    "nb2prod_predict_seconds",
    "Time to answer a request: checks, model, guardrails and fallback",
    ["model_version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
FALLBACK_RATIO = Gauge(
    "nb2prod_fallback_ratio",
    "Share of the last 1,000 rows answered by the fallback",
    ["model_version"],
    multiprocess_mode="mostrecent",
)
DRIFT = Gauge(
    "nb2prod_drift_psi",
    "Population stability index per input feature",
    ["model_version", "feature"],
    multiprocess_mode="max",
)
QUALITY = Gauge(
    "nb2prod_live_quality",
    "Quality measured from feedback (accuracy or MAE)",
    ["model_version", "metric"],
    multiprocess_mode="mostrecent",
)
COST = Counter(
    "nb2prod_model_cost",
    "Cost of model calls (cost_per_call x rows sent to the model)",
    ["model_version"],
)

_recent: deque[bool] = deque(maxlen=1000)
_fallbacks = 0  # how many of _recent are True: the ratio without summing 1,000 bools a request
_lock = threading.Lock()
# Labelled children, looked up once: ``labels()`` validates and locks on every call, and
# a child, once made, is the metric's for good (nb2prod never removes one).
_children: dict[tuple, Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def count_failures(model_version: str, failures: list[tuple[str, str]]) -> None:
    """Count one request's ``(check, severity)`` row failures."""
    for (check, severity), n in Tally(failures).items():
        _child(CHECK_FAILURES, model_version, check, severity).inc(n)


def count_answers(
    model_version: str,
    answers: list[dict],
    latency_ms: float = 0.0,
    cost_per_call: float | None = None,
) -> None:
    """Count one request's answers by where they came from, its latency and its cost."""
    global _fallbacks
    sources = Tally([(a["source"], a["reason"] or "") for a in answers])
    n_fallback = 0
    for (source, reason), n in sources.items():
        _child(PREDICTIONS, model_version, source, reason).inc(n)
        if source == "fallback":
            n_fallback += n
    _child(LATENCY, model_version).observe(latency_ms / 1000)
    m = len(answers)
    if 0 < n_fallback < m:  # the window keeps which rows, in order
        fallback = [a["source"] == "fallback" for a in answers]
    else:
        fallback = [n_fallback > 0] * m
    with _lock:
        if m >= (_recent.maxlen or 0):
            _recent.extend(fallback)
            _fallbacks = sum(_recent)
        else:
            pushed_out = len(_recent) + m - (_recent.maxlen or 0)
            if pushed_out > 0:
                _fallbacks -= sum(islice(_recent, pushed_out))
            _recent.extend(fallback)
            _fallbacks += n_fallback
        ratio = _fallbacks / len(_recent)
    _child(FALLBACK_RATIO, model_version).set(ratio)
    if cost_per_call:
        # rows the model was asked about: its answers plus those it failed to give
        asked = m - sum(n for (_, reason), n in sources.items() if reason == "check")
        _child(COST, model_version).inc(cost_per_call * asked)
