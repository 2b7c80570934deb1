"""One served model version at work: predict, watch drift, audit, take feedback.

``Serving`` is what the BentoML service class and the HTTP middleware share. Every
answer is audited *before* it is returned; monitoring (drift, metrics) can never fail a
prediction. Operators tune it with environment variables (see ``Settings``).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from nb2prod.core.errors import Nb2prodError
from nb2prod.runtime import metrics
from nb2prod.runtime.audit import AuditLog
from nb2prod.runtime.drift import DriftMonitor
from nb2prod.runtime.feedback import FeedbackLog, infer_kind
from nb2prod.runtime.http import HTTPError
from nb2prod.runtime.predict import NoFallbackError, Predictor, RequestRejected
from nb2prod.runtime.review import ReviewQueue

log = logging.getLogger("nb2prod")
REVIEWED = ("guardrail", "low_confidence")  # reasons a person should look at


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


@dataclass(frozen=True)
class Settings:
    """Deployment settings, read from the environment when the service starts.

    ``NB2PROD_AUDIT_URL`` (a SQLAlchemy URL or SQLite path; ``off`` disables the audit
    log; default the model name's own SQLite database, ``audit.home_url``, the same for
    every bento of the name), ``NB2PROD_AUDIT_SYNC`` (SQLite:
    ``NORMAL``, the default, survives a killed process; ``FULL`` also a power cut, at
    one fsync per request), ``NB2PROD_DRIFT`` (``off`` disables drift monitoring),
    ``NB2PROD_DRIFT_WINDOW`` (rows, 10000) and ``NB2PROD_DRIFT_THRESHOLD`` (PSI, 0.2).
    """

    audit: bool
    audit_url: str | None  # None: the model name's default database
    audit_sync: str
    drift: bool
    drift_window: int
    drift_threshold: float

    @classmethod
    def from_env(cls) -> "Settings":
        """The settings in force for this process."""
        url = _env("NB2PROD_AUDIT_URL", "")
        return cls(audit=url.lower() != "off", audit_url=url or None,
                   audit_sync=_env("NB2PROD_AUDIT_SYNC", "NORMAL").upper(),
                   drift=_env("NB2PROD_DRIFT", "on").lower() != "off",
                   drift_window=int(_env("NB2PROD_DRIFT_WINDOW", "10000")),
                   drift_threshold=float(_env("NB2PROD_DRIFT_THRESHOLD", "0.2")))


def open_audit(settings: Settings, contract: Any, model_tag: str) -> AuditLog | None:
    """The audit log for this version; ``AuditError`` when the database is unreachable."""
    if not settings.audit:
        return None
    return AuditLog.open(settings.audit_url, model_version=model_tag,
                         notebook_sha256=contract.notebook_sha256, pii=contract.pii,
                         sqlite_synchronous=settings.audit_sync)


class Serving:
    """Answers requests for one model version and keeps their record."""

    def __init__(self, *, model_tag: str, contract: Any, predictor: Predictor,
                 to_frame: Any, profile: dict | None, settings: Settings, built_at: str = ""):
        self.model_tag, self.contract, self.built_at = model_tag, contract, built_at
        self.predictor, self.to_frame = predictor, to_frame
        self.audit = open_audit(settings, contract, model_tag)
        kind = infer_kind(contract.expected[0]["prediction"]) if contract.expected \
            else "classifier"
        self.feedback = FeedbackLog(self.audit, kind=kind) if self.audit else None
        self.review = ReviewQueue(self.audit, self.feedback) if self.audit else None
        self.drift = (DriftMonitor(profile, window=settings.drift_window,
                                   threshold=settings.drift_threshold)
                      if profile and settings.drift else None)

    def predict(self, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` for one ``POST /predict``."""
        started = time.perf_counter()
        X = self.to_frame(records)
        seen = self._bins(X, records)  # before the notebook's code could change X
        try:
            answers = self.predictor.predict(X, self.to_frame.for_model(X))
        except RequestRejected as exc:
            return 422, {"error": f"{len(exc.errors)} check failure(s): the request is "
                                  "refused", "detail": exc.errors}
        except NoFallbackError as exc:
            return 503, {"error": exc.message}
        self._watch(seen, len(records))
        request_id = uuid.uuid4().hex
        latency_ms = (time.perf_counter() - started) * 1000
        if self.audit is not None:
            review = {i: a["reason"] for i, a in enumerate(answers) if a["reason"] in REVIEWED}
            try:
                self.audit.record(request_id, records, answers, latency_ms=latency_ms,
                                  review=review)
            except Nb2prodError as exc:  # never answer what could not be recorded
                log.error("audit log: %s", exc)
                return getattr(exc, "http_status", 503), {
                    "error": "the prediction could not be recorded in the audit log, so it is "
                             "not returned; retry later"}
        metrics.count_answers(self.model_tag, answers, latency_ms, self.contract.cost_per_call)
        return 200, {"request_id": request_id, "model_version": self.model_tag,
                     "predictions": answers}

    def _bins(self, X: Any, records: list[dict[str, Any]]) -> Any:
        if self.drift is None:
            return None
        try:
            return self.drift.bins(X if self.to_frame.all_float else None, records)
        except Exception:  # monitoring must never cost a prediction
            log.exception("drift monitoring failed; the prediction is unaffected")
            return None

    def _watch(self, seen: Any, n: int) -> None:
        if seen is None:
            return
        try:
            for feature in self.drift.add(seen, n):
                metrics.DRIFT.labels(self.model_tag, feature).set(
                    self.drift.report()["features"][feature]["psi"] or 0.0)
        except Exception:  # monitoring must never cost a prediction
            log.exception("drift monitoring failed; the prediction is unaffected")

    def record_feedback(self, request_id: str, label: Any, row: int) -> tuple[int, dict]:
        """``(status, body)`` for one ``POST /feedback``."""
        if self.feedback is None:
            return 404, {"error": "feedback needs the audit log, which is off "
                                  "(NB2PROD_AUDIT_URL=off)"}
        try:
            result = self.feedback.record_feedback(request_id, label, row)
        except Nb2prodError as exc:
            return getattr(exc, "http_status", 400), {"error": exc.what}
        quality = self.feedback.quality(result.model_version)
        if quality["value"] is not None:
            metrics.QUALITY.labels(result.model_version, quality["metric"]).set(quality["value"])
        return 200, {"request_id": request_id, "row": row, "new": result.new,
                     "model_version": result.model_version}

    def startup_line(self) -> str:
        """What this worker serves and how, in one line for the server log: the operator
        sees where the audit log goes (password masked) and what is switched off."""
        deadline = self.predictor.policy.timeout_s
        admin = "on" if os.environ.get("NB2PROD_ADMIN_TOKEN") else \
            "off (set NB2PROD_ADMIN_TOKEN to enable)"
        return (f"nb2prod: serving {self.model_tag}; audit log "
                f"{self.audit.url if self.audit else 'off'}; admin endpoints {admin}; "
                f"deadline {f'{deadline:g}s' if deadline else 'none'}; "
                f"drift {'on' if self.drift else 'off'}")

    def info(self) -> dict[str, Any]:
        """``GET /model``: the served version's facts plus live quality from feedback."""
        c = self.contract
        return {
            "name": c.name, "model_version": self.model_tag, "metrics": c.metrics,
            "gate": [{"metric": g.metric, "value": g.value, "threshold": g.threshold.describe(),
                      "passed": g.passed} for g in c.gate],
            "notebook_sha256": c.notebook_sha256, "parameters": c.parameters,
            "trained_at": c.created_at, "built_at": self.built_at,
            "nb2prod_version": c.nb2prod_version,
            # the module-level values the notebook code uses, taken from the training run
            "captured": list(c.captured),
            "live_quality": self.feedback.quality(self.model_tag) if self.feedback else None}

    def drift_report(self) -> dict[str, Any]:
        """``GET /drift``: per-feature PSI, thresholds and status; refreshes the gauges."""
        if self.drift is None:
            return {"status": "off", "features": {}}
        report = self.drift.report()
        for name, feature in report["features"].items():
            if feature["status"] != "insufficient_data":  # PSI of a handful of rows means nothing
                metrics.DRIFT.labels(self.model_tag, name).set(feature["psi"])
        return report

    def pending_review(self, _body: Any, _rest: str) -> dict[str, Any]:
        """``GET /admin/review``: rows waiting for a person, oldest first."""
        items = self.review.pending() if self.review else []
        return {"pending": [{**vars(i), "created_at": i.created_at.isoformat()}
                            for i in items]}

    def resolve_review(self, body: Any, rest: str) -> dict[str, Any]:
        """``POST /admin/review/<id>`` with ``{"label": ...}``: the verdict becomes feedback."""
        if self.review is None:
            raise HTTPError(404, "the review queue needs the audit log, which is off")
        if not re.fullmatch(r"[0-9]{1,18}", rest) or not isinstance(body, dict) \
                or "label" not in body:
            raise HTTPError(400, 'POST /admin/review/<item id> with {"label": <the true label>}')
        try:
            result = self.review.resolve(int(rest), body["label"])
        except Nb2prodError as exc:
            raise HTTPError(getattr(exc, "http_status", 400), exc.what) from None
        return {"item": int(rest), "request_id": result.request_id, "row": result.row,
                "resolved": True}

    def close(self) -> None:
        """Flush and close the audit log."""
        if self.audit is not None:
            self.audit.close()
