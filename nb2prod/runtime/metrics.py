"""Prometheus metrics a served notebook exposes on BentoML's ``/metrics``.

Defined once per process at import (a second definition would be a duplicate-metric
error); BentoML's multiprocess collector publishes them.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter

PREDICTIONS = Counter("nb2prod_predictions", "Rows answered, by source and reason",
                      ["model_version", "source", "reason"])
CHECK_FAILURES = Counter("nb2prod_check_failures", "Rows failing an input check, by check "
                         "and severity", ["model_version", "check", "severity"])


def count_failures(model_version: str, failures: list[tuple[str, str]]) -> None:
    """Count one request's ``(check, severity)`` row failures."""
    for (check, severity), n in Tally(failures).items():
        CHECK_FAILURES.labels(model_version, check, severity).inc(n)


def count_answers(model_version: str, answers: list[dict]) -> None:
    """Count one request's answers by where they came from."""
    for (source, reason), n in Tally((a["source"], a["reason"] or "") for a in answers).items():
        PREDICTIONS.labels(model_version, source, reason).inc(n)
