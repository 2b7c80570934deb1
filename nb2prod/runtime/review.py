"""The human review queue: answers a person should look at, and their verdicts.

Rows get queued two ways: ``AuditLog.record(..., review={row: reason})`` on the request
path (same transaction as the audit record, spooled with it while the database is away),
or ``ReviewQueue.enqueue`` from anywhere else. Typical reasons are ``"guardrail"`` and
``"low_confidence"``. A row is queued at most once: enqueueing it again returns the same
item. Inputs pass through the audit log's PII policy, so the queue never holds raw PII.

``resolve(item_id, label)`` marks the item resolved *and* records the label as feedback
(the same join and label checks as ``FeedbackLog.record_feedback``: one of the model's
classes, or a finite number for a regressor), in one transaction: an invalid label
leaves the item pending (400 naming the valid classes). The verdict is stored as
feedback stores the label: as the class itself. Resolving an item twice is
``AlreadyResolvedError`` (409); to correct a label afterwards, send feedback for its row.
"""

from __future__ import annotations

from typing import Any, Mapping

from nb2prod.core.errors import Conflict
from nb2prod.runtime.audit import AuditLog, ReviewItem  # ReviewItem: pending()'s items
from nb2prod.runtime.feedback import FeedbackLog, FeedbackResult, UnknownRecordError


class AlreadyResolvedError(Conflict):
    """The review item has a verdict already: the service answers 409."""


class ReviewQueue:
    """Review items stored next to the audit log; verdicts go to ``feedback``."""

    def __init__(self, audit: AuditLog, feedback: FeedbackLog):
        self.audit = audit
        self.feedback = feedback

    def enqueue(
        self, request_id: str, row: int, reason: str, input: Mapping[str, Any], output: Any
    ) -> int:
        """Queue ``row`` of request ``request_id`` for review; returns the item id.

        Queueing the same row again changes nothing and returns the existing id.
        """
        with self.audit.transaction() as tx:
            return tx.queue_review(request_id, row, reason, input, output)

    def pending(self, limit: int = 50) -> list[ReviewItem]:
        """Up to ``limit`` unresolved items, oldest first."""
        with self.audit.transaction(readonly=True) as tx:
            return tx.pending_reviews(limit)

    def resolve(self, item_id: int, label: Any) -> FeedbackResult:
        """Record a reviewer's ``label`` for item ``item_id`` and mark it resolved.

        Raises ``UnknownRecordError`` (404) for an unknown item or audit record,
        ``AlreadyResolvedError`` (409) when it was resolved before, ``LabelError`` (400)
        for a label the model's output kind does not accept.
        """
        with self.audit.transaction() as tx:
            found = tx.review_item(item_id, lock=True)  # two reviewers: one wins
            if found is None:
                raise UnknownRecordError(
                    f"no review item {item_id}",
                    where=self.audit.url,
                    fix="take item ids from the pending() list",
                )
            item, verdict = found
            if verdict is not None:
                raise AlreadyResolvedError(
                    f"review item {item_id} was resolved at {verdict.resolved_at} with label "
                    f"{verdict.label!r}",
                    where=f"request {item.request_id}, row {item.row}",
                    fix="to change the label, send feedback for that request and row",
                )
            result = self.feedback.record_in(tx, item.request_id, item.row, label)
            tx.resolve_review(item_id, result.label)  # as feedback stored it: the class
        return result
