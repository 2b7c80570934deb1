"""One served model version at work: predict, watch drift, audit, take feedback.

``Serving`` is what the BentoML service class and the HTTP app share. Its methods return
data or raise a ``ServiceError`` (``nb2prod.core.errors``), which ``app.error_response``
turns into a status and a body. Every answer is audited *before* it is returned;
monitoring (drift, metrics) can never fail a prediction. Operators tune it with
environment variables, read once by ``nb2prod.core.settings``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Sequence

from nb2prod.core.errors import (
    BadRequest,
    Nb2prodError,
    NotFound,
    ServiceError,
    Unavailable,
    Unprocessable,
)
from nb2prod.core.settings import Settings
from nb2prod.runtime import metrics
from nb2prod.runtime.app import admin_disabled
from nb2prod.runtime.audit import AuditUnavailable, open_audit
from nb2prod.runtime.drift import DriftMonitor
from nb2prod.runtime.feedback import FeedbackLog, infer_kind
from nb2prod.runtime.predict import (
    NoFallbackError,
    Predictor,
    RequestRejected,
    Steps,
    adrive,
    drive,
)
from nb2prod.runtime.review import ReviewQueue

log = logging.getLogger("nb2prod")
REVIEWED = ("guardrail", "low_confidence")  # reasons a person should look at


class Serving:
    """Answers requests for one model version and keeps their record."""

    def __init__(
        self,
        *,
        model_tag: str,
        contract: Any,
        predictor: Predictor,
        to_frame: Any,
        profile: dict | None,
        settings: Settings,
        built_at: str = "",
    ):
        self.model_tag, self.contract, self.built_at = model_tag, contract, built_at
        self.settings = settings
        self.predictor, self.to_frame = predictor, to_frame
        self.audit = open_audit(settings, contract, model_tag)
        kind = infer_kind(contract.expected[0]["prediction"]) if contract.expected else "classifier"
        self.feedback: FeedbackLog | None = None
        self.review: ReviewQueue | None = None
        if self.audit is not None:  # both live in the audit database
            self.feedback = FeedbackLog(
                self.audit, kind=kind, classes=getattr(contract, "classes", None)
            )
            self.review = ReviewQueue(self.audit, self.feedback)
        self.drift = (
            DriftMonitor(profile, window=settings.drift_window, threshold=settings.drift_threshold)
            if profile and settings.drift
            else None
        )

    def predict(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The answer to one ``POST /predict``: ``Unprocessable`` (422) when a reject-level
        check fails, ``Unavailable`` (503) when there is no fallback to answer for the
        model or the answer cannot be audited. The model is called in this thread."""
        return drive(self.steps(records), self.predictor.call_model)

    async def apredict(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``predict`` on the event loop: the model call is awaited (``adrive``)."""
        return await adrive(self.steps(records), self.predictor.acall_model)

    def steps(self, records: Sequence[dict[str, Any]]) -> Steps:
        """``predict`` as steps that yield the model's rows (``predict.Predictor.steps``)."""
        started = time.perf_counter()
        # all-float columns: the request's values once, for the frame and the audit log
        values = self.to_frame.array(records)
        X = self.to_frame(records, values)
        seen = self._bins(X, records)  # before the notebook's code could change X
        try:
            answers = yield from self.predictor.steps(X, self.to_frame.for_model(X))
        except RequestRejected as exc:
            raise Unprocessable(
                f"{len(exc.errors)} check failure(s): the request is refused", detail=exc.errors
            ) from None
        except NoFallbackError as exc:
            raise Unavailable(exc.message) from None
        self._watch(seen, len(records))
        request_id = uuid.uuid4().hex
        latency_ms = (time.perf_counter() - started) * 1000
        if self.audit is not None:
            review = {i: a["reason"] for i, a in enumerate(answers) if a["reason"] in REVIEWED}
            if values is not None and not self.to_frame.in_order(records):
                values = None  # not the records' table: the audit log walks them itself
            try:
                self.audit.record(
                    request_id,
                    records,
                    answers,
                    latency_ms=latency_ms,
                    review=review,
                    values=values,
                )
            except Nb2prodError as exc:  # never answer what could not be recorded
                if not isinstance(exc, AuditUnavailable):  # that one logs once, then counts
                    log.error("audit log: %s", exc)
                raise Unavailable(
                    "the prediction could not be recorded in the audit log, so "
                    "it is not returned; retry later"
                ) from None
        metrics.count_answers(self.model_tag, answers, latency_ms, self.contract.cost_per_call)
        return {"request_id": request_id, "model_version": self.model_tag, "predictions": answers}

    def _bins(self, X: Any, records: Sequence[dict[str, Any]]) -> Any:
        if self.drift is None:
            return None
        try:
            return self.drift.bins(X if self.to_frame.all_float else None, records)
        except Exception:  # monitoring must never cost a prediction
            log.exception("drift monitoring failed; the prediction is unaffected")
            return None

    def _watch(self, seen: Any, n: int) -> None:
        drift = self.drift
        if seen is None or drift is None:
            return
        try:
            for feature in drift.add(seen, n):
                metrics.DRIFT.labels(self.model_tag, feature).set(
                    drift.report()["features"][feature]["psi"] or 0.0
                )
        except Exception:  # monitoring must never cost a prediction
            log.exception("drift monitoring failed; the prediction is unaffected")

    def record_feedback(self, request_id: str, label: Any, row: int) -> dict[str, Any]:
        """The answer to one ``POST /feedback``: ``NotFound`` for an unknown request or
        row (or with the audit log off), ``BadRequest`` for any label the model's kind
        refuses: ``label`` is whatever JSON value the client sent (``feedback.py`` says
        which are taken)."""
        if self.feedback is None:
            raise NotFound("feedback needs the audit log, which is off (NB2PROD_AUDIT_URL=off)")
        try:
            result = self.feedback.record_feedback(request_id, label, row)
        except ServiceError:
            raise
        except Nb2prodError as exc:  # any other problem with the label is the request's
            raise BadRequest(exc.what) from None
        quality = self.feedback.quality(result.model_version)
        if quality["value"] is not None:
            metrics.QUALITY.labels(result.model_version, quality["metric"]).set(quality["value"])
        return {
            "request_id": request_id,
            "row": row,
            "new": result.new,
            "model_version": result.model_version,
        }

    def startup_line(self) -> str:
        """What this worker serves and how, in one line for the server log: the operator
        sees where the audit log goes (password masked) and what is switched off."""
        deadline = self.predictor.policy.timeout_s
        why = admin_disabled(self.settings.admin_token)
        admin = "on" if why is None else f"off ({why})"
        return (
            f"nb2prod: serving {self.model_tag}; audit log "
            f"{self.audit.url if self.audit else 'off'}; admin endpoints {admin}; "
            f"deadline {f'{deadline:g}s' if deadline else 'none'}; "
            f"drift {'on' if self.drift else 'off'}"
        )

    def info(self) -> dict[str, Any]:
        """``GET /model``: the served version's facts plus live quality from feedback."""
        c = self.contract
        return {
            "name": c.name,
            "model_version": self.model_tag,
            "metrics": c.metrics,
            "gate": [
                {
                    "metric": g.metric,
                    "value": g.value,
                    "threshold": g.threshold.describe(),
                    "passed": g.passed,
                }
                for g in c.gate
            ],
            "notebook_sha256": c.notebook_sha256,
            "parameters": c.parameters,
            "trained_at": c.created_at,
            "built_at": self.built_at,
            "nb2prod_version": c.nb2prod_version,
            # the module-level values the notebook code uses, taken from the training run
            "captured": list(c.captured),
            "live_quality": self.feedback.quality(self.model_tag) if self.feedback else None,
        }

    def drift_report(self, others: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """``GET /drift``: per-feature PSI, thresholds and status; refreshes the gauges.
        ``others`` are other workers' ``DriftMonitor.snapshot()``s, reported with this one."""
        if self.drift is None:
            return {"status": "off", "features": {}}
        report = self.drift.report()  # this worker's own window: warns when it drifts
        if others:
            report = self.drift.merged(list(others))
        for name, feature in report["features"].items():
            if feature["status"] != "insufficient_data":  # PSI of a handful of rows means nothing
                metrics.DRIFT.labels(self.model_tag, name).set(feature["psi"])
        return report

    def pending_review(self) -> dict[str, Any]:
        """``GET /admin/review``: rows waiting for a person, oldest first."""
        items = self.review.pending() if self.review else []
        return {"pending": [{**vars(i), "created_at": i.created_at.isoformat()} for i in items]}

    def resolve_review(self, item_id: str, body: Any) -> dict[str, Any]:
        """``POST /admin/review/{item_id}`` with ``{"label": ...}``: the verdict becomes
        feedback. ``Conflict`` (409) when the item was resolved already."""
        if self.review is None:
            raise NotFound("the review queue needs the audit log, which is off")
        if (
            not re.fullmatch(r"[0-9]{1,18}", item_id)
            or not isinstance(body, dict)
            or "label" not in body
        ):
            raise BadRequest('POST /admin/review/<item id> with {"label": <the true label>}')
        try:
            result = self.review.resolve(int(item_id), body["label"])
        except ServiceError:
            raise
        except Nb2prodError as exc:  # any other problem with the label is the request's
            raise BadRequest(exc.what) from None
        return {
            "item": int(item_id),
            "request_id": result.request_id,
            "row": result.row,
            "resolved": True,
        }

    def close(self) -> None:
        """Write the failures counted since the last summary; flush and close the audit log."""
        self.predictor.tracebacks.flush(log)
        if self.audit is not None:
            self.audit.close()
