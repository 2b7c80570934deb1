"""What feedback and review read and write next to the audit log, in one transaction.

``AuditLog.transaction()`` yields a ``Transaction``: every call on it runs in the same
database transaction, committed when the ``with`` block ends and rolled back if it
raises. It speaks in requests, rows, labels and review items, never in tables or
connections, so ``feedback.py`` and ``review.py`` need nothing else from the package.
Missing things come back as ``None``; what that means (a 404, a retry after a flush) is
the caller's to say.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Mapping

import sqlalchemy as sa

from nb2prod.runtime.audit.layout import Tables, records_of
from nb2prod.runtime.audit.pii import PiiPolicy
from nb2prod.runtime.audit.sinks import Sink


@dataclass(frozen=True)
class Answered:
    """One audited request: the version that answered it and its answers in row order
    (each ``{"prediction", "source", "reason", "warnings"}``)."""

    request_id: str
    model_version: str
    output: list[dict[str, Any]]


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


@dataclass(frozen=True)
class Verdict:
    """A resolved review item's label and when it was given."""

    label: Any
    resolved_at: datetime


_ITEM = tuple(f.name for f in fields(ReviewItem))


class Transaction:
    """One database transaction over the audit, feedback and review tables."""

    def __init__(
        self, conn: sa.Connection, tables: Tables, sink: Sink, pii: PiiPolicy, model_version: str
    ):
        self._conn, self._tables, self._sink, self._pii = conn, tables, sink, pii
        self._model_version = model_version

    # -- audited answers --------------------------------------------------------------------

    def answered(self, request_id: str, *, lock: bool = False) -> Answered | None:
        """The audited request ``request_id``, or None if the database has no such request.

        ``lock=True`` holds it until the transaction ends (PostgreSQL: ``FOR UPDATE``;
        SQLite's write transactions exclude each other anyway), so concurrent labels for
        one request take turns.
        """
        audit = self._tables.audit
        query = sa.select(audit.c.output, audit.c.model_version).where(
            audit.c.request_id == request_id
        )
        found = self._conn.execute(query.with_for_update() if lock else query).first()
        if found is None:
            return None
        return Answered(request_id, found.model_version, found.output)

    # -- labels -----------------------------------------------------------------------------

    def write_label(
        self,
        request_id: str,
        row: int,
        *,
        model_version: str,
        source: str | None,
        kind: str,
        label: Any,
        score: float,
    ) -> bool:
        """Store ``label`` (and its ``score``) for ``row`` of ``request_id``; True when the
        row had no label yet, False when it replaced one (``updated_at`` says when)."""
        fb, now = self._tables.feedback, datetime.now(timezone.utc)
        key = (fb.c.request_id == request_id) & (fb.c.row == row)
        replaced = self._conn.execute(
            fb.update().where(key).values(label=label, score=score, kind=kind, updated_at=now)
        ).rowcount
        if not replaced:
            self._conn.execute(
                fb.insert().values(
                    request_id=request_id,
                    row=row,
                    model_version=model_version,
                    source=source,
                    kind=kind,
                    label=label,
                    score=score,
                    created_at=now,
                )
            )
        return not replaced

    def scores(self, model_version: str, kind: str) -> tuple[int, float | None]:
        """``(n, mean score)`` of the ``kind`` labels of rows ``model_version`` answered;
        the mean is None when n is 0."""
        fb = self._tables.feedback
        n, mean = self._conn.execute(
            sa.select(sa.func.count(), sa.func.avg(fb.c.score)).where(
                fb.c.model_version == model_version, fb.c.kind == kind
            )
        ).one()
        return int(n), (float(mean) if n else None)

    def labelled_inputs(self, model: str) -> list[tuple[dict[str, Any], Any]]:
        """``(input record, label)`` for every labelled row of model ``model`` (any
        version), oldest request first; inputs as stored (PII hashed or absent)."""
        a, fb = self._tables.audit, self._tables.feedback
        found = self._conn.execute(
            sa.select(a.c.input, fb.c.row, fb.c.label)
            .join(fb, fb.c.request_id == a.c.request_id)
            .where(a.c.model == model)
            .order_by(a.c.created_at, a.c.request_id, fb.c.row)
        )
        return [(records_of(r.input, [r.row])[0], r.label) for r in found]

    # -- the review queue -------------------------------------------------------------------

    def queue_review(
        self, request_id: str, row: int, reason: str, input: Mapping[str, Any], output: Any
    ) -> int:
        """Queue ``row`` of ``request_id`` for review, through the audit log's PII policy;
        the item's id. A row already queued keeps its item, whose id is returned."""
        clean, secrets = self._pii.clean(input)
        review = self._tables.review
        self._sink.insert_new(
            self._conn,
            review,
            [
                {
                    "request_id": request_id,
                    "row": row,
                    "reason": reason,
                    "model_version": self._model_version,
                    "input": clean,
                    "output": self._pii.scrub(output, secrets),
                    "created_at": datetime.now(timezone.utc),
                }
            ],
        )
        return self._conn.execute(
            sa.select(review.c.id).where(review.c.request_id == request_id, review.c.row == row)
        ).scalar_one()

    def review_item(
        self, item_id: int, *, lock: bool = False
    ) -> tuple[ReviewItem, Verdict | None] | None:
        """Item ``item_id`` and its verdict (None while pending), or None if there is no
        such item. ``lock=True`` holds it until the transaction ends: of two reviewers
        resolving it at once, one waits and then sees the other's verdict."""
        review = self._tables.review
        query = sa.select(review).where(review.c.id == item_id)
        found = self._conn.execute(query.with_for_update() if lock else query).first()
        if found is None:
            return None
        item = ReviewItem(**{f: found._mapping[f] for f in _ITEM})
        verdict = None if found.resolved_at is None else Verdict(found.label, found.resolved_at)
        return item, verdict

    def pending_reviews(self, limit: int) -> list[ReviewItem]:
        """Up to ``limit`` unresolved items, oldest first."""
        review = self._tables.review
        found = self._conn.execute(
            sa.select(*(review.c[f] for f in _ITEM))
            .where(review.c.resolved_at.is_(None))
            .order_by(review.c.id)
            .limit(limit)
        )
        return [ReviewItem(**r._mapping) for r in found]

    def resolve_review(self, item_id: int, label: Any) -> None:
        """Mark item ``item_id`` resolved with ``label``, now."""
        review = self._tables.review
        self._conn.execute(
            review.update()
            .where(review.c.id == item_id)
            .values(resolved_at=datetime.now(timezone.utc), label=label)
        )
