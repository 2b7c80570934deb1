"""The human review queue: answers a person should look at, and their verdicts.

Rows get queued two ways: ``AuditLog.record(..., review={row: reason})`` on the request
path (same transaction as the audit record, spooled with it while the database is away),
or ``ReviewQueue.enqueue`` from anywhere else. Typical reasons are ``"guardrail"`` and
``"low_confidence"``. A row is queued at most once: enqueueing it again returns the same
item. Inputs pass through the audit log's PII policy, so the queue never holds raw PII.

``resolve(item_id, label)`` marks the item resolved *and* records the label as feedback
(the same join and label checks as ``FeedbackLog.record_feedback``), in one transaction:
an invalid label leaves the item pending. Resolving an item twice is
``AlreadyResolvedError`` (409); to correct a label afterwards, send feedback for its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import sqlalchemy as sa

from nb2prod.core.errors import Conflict
from nb2prod.runtime.audit import AuditLog
from nb2prod.runtime.feedback import FeedbackLog, FeedbackResult, UnknownRecordError


class AlreadyResolvedError(Conflict):
    """The review item has a verdict already: the service answers 409."""


@dataclass(frozen=True)
class ReviewItem:
    """One queued answer: which row, why, what came in (PII removed) and what went out."""

    id: int
    request_id: str
    row: int
    model_version: str
    reason: str
    input: dict[str, Any]
    output: Any
    created_at: datetime


class ReviewQueue:
    """Review items stored next to the audit log; verdicts go to ``feedback``."""

    def __init__(self, audit: AuditLog, feedback: FeedbackLog):
        self.audit = audit
        self.feedback = feedback

    def enqueue(self, request_id: str, row: int, reason: str, input: Mapping[str, Any],
                output: Any) -> int:
        """Queue ``row`` of request ``request_id`` for review; returns the item id.

        Queueing the same row again changes nothing and returns the existing id.
        """
        clean, secrets = self.audit.pii.clean(input)
        table = self.audit.tables.review
        with self.audit.begin() as conn:
            self.audit.sink.insert_new(conn, table, [{
                "request_id": request_id, "row": row, "reason": reason,
                "model_version": self.audit.model_version, "input": clean,
                "output": self.audit.pii.scrub(output, secrets),
                "created_at": datetime.now(timezone.utc)}])
            return conn.execute(sa.select(table.c.id).where(
                table.c.request_id == request_id, table.c.row == row)).scalar_one()

    def pending(self, limit: int = 50) -> list[ReviewItem]:
        """Up to ``limit`` unresolved items, oldest first."""
        table = self.audit.tables.review
        with self.audit.begin(readonly=True) as conn:
            found = conn.execute(
                sa.select(*(table.c[f] for f in ReviewItem.__dataclass_fields__))
                .where(table.c.resolved_at.is_(None)).order_by(table.c.id).limit(limit))
            return [ReviewItem(**r._mapping) for r in found]

    def resolve(self, item_id: int, label: Any) -> FeedbackResult:
        """Record a reviewer's ``label`` for item ``item_id`` and mark it resolved.

        Raises ``UnknownRecordError`` (404) for an unknown item or audit record,
        ``AlreadyResolvedError`` (409) when it was resolved before, ``LabelError`` (400)
        for a label the model's output kind does not accept.
        """
        table = self.audit.tables.review
        with self.audit.begin() as conn:
            item = conn.execute(sa.select(table).where(table.c.id == item_id)
                                .with_for_update()).first()  # two reviewers: one wins
            if item is None:
                raise UnknownRecordError(f"no review item {item_id}", where=self.audit.url,
                                         fix="take item ids from the pending() list")
            if item.resolved_at is not None:
                raise AlreadyResolvedError(
                    f"review item {item_id} was resolved at {item.resolved_at} with label "
                    f"{item.label!r}", where=f"request {item.request_id}, row {item.row}",
                    fix="to change the label, send feedback for that request and row")
            result = self.feedback.record_in(conn, item.request_id, item.row, label)
            conn.execute(table.update().where(table.c.id == item_id).values(
                resolved_at=datetime.now(timezone.utc), label=label))
        return result
