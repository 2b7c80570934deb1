"""How long the audit log keeps requests: ``prune``, and ``every`` to run it on a timer.

The audit log grows by every answered request (about 3 MB for a 10,000-row request), so
it needs an end. ``prune(cutoff)`` deletes requests created before ``cutoff`` with their
resolved review items, but never a request that has feedback (a label retraining may
use) or a review item still pending (a person has yet to look at it): those stay
whatever their age. It deletes in batches of ``BATCH`` requests, one short transaction
each, so a served log keeps answering meanwhile. On SQLite it then checkpoints the WAL
(TRUNCATE) and says how many bytes that returned; deleted rows leave free pages inside
the database file, which later requests reuse (``VACUUM`` gives them back to the disk,
with the service stopped: it rewrites the whole file).

Nothing is pruned unless asked: ``nb2prod audit prune NAME --older-than 30d``, or
``$NB2PROD_AUDIT_RETAIN_DAYS`` for the service to prune hourly (``every``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from nb2prod.runtime.audit.layout import Tables
from nb2prod.runtime.audit.sinks import file_size, truncate_wal

log = logging.getLogger("nb2prod")
BATCH = 500  # requests deleted per transaction: each holds the write lock briefly
EVERY_S = 3600.0  # how often a service with a retention setting prunes
FIRST_S = 60.0  # ... and how long after it starts (start-up is not slowed by it)


@dataclass(frozen=True)
class Pruned:
    """What one prune did: requests and review items removed, old requests kept (with
    feedback or a pending review), and on SQLite the WAL bytes returned to the disk and
    the bytes now free inside the database file."""

    cutoff: datetime
    requests: int
    review_items: int
    kept: int
    wal_bytes_returned: int | None = None
    free_bytes: int | None = None

    def summary(self) -> str:
        """One line for the command line and the server log."""
        text = (
            f"removed {self.requests} request(s) created before {self.cutoff:%Y-%m-%d %H:%M} "
            f"UTC and {self.review_items} resolved review item(s); kept {self.kept} older "
            "request(s) with feedback or a pending review"
        )
        if self.wal_bytes_returned is not None:
            text += (
                f"; the WAL checkpoint returned {_mb(self.wal_bytes_returned)} to the disk, "
                f"{_mb(self.free_bytes or 0)} is free inside the database file for new "
                "requests"
            )
        return text


def prune(
    engine: sa.Engine,
    tables: Tables,
    model: str,
    cutoff: datetime,
    *,
    sqlite_file: Path | None = None,
) -> Pruned:
    """Delete ``model``'s requests created before ``cutoff``, except those with feedback
    or a pending review (see the module doc); with ``sqlite_file``, checkpoint its WAL
    afterwards. Other models' requests in the same database are not touched."""
    audit, feedback, review = tables.audit, tables.feedback, tables.review
    keep = sa.or_(
        audit.c.request_id.in_(sa.select(feedback.c.request_id)),
        audit.c.request_id.in_(
            sa.select(review.c.request_id).where(review.c.resolved_at.is_(None))
        ),
    )
    old = sa.and_(audit.c.model == model, audit.c.created_at < cutoff)
    removed = items = 0
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    sa.select(audit.c.request_id).where(old, sa.not_(keep)).limit(BATCH)
                ).scalars()
            )
            if not ids:
                kept = conn.execute(
                    sa.select(sa.func.count()).select_from(audit).where(old)
                ).scalar_one()
                break
            items += conn.execute(review.delete().where(review.c.request_id.in_(ids))).rowcount
            removed += conn.execute(audit.delete().where(audit.c.request_id.in_(ids))).rowcount
    if sqlite_file is None:
        return Pruned(cutoff, removed, items, kept)
    returned, free = _checkpoint(engine, sqlite_file)
    return Pruned(cutoff, removed, items, kept, returned, free)


def every(run: Callable[[timedelta], Pruned], keep: timedelta, *, where: str) -> Callable[[], None]:
    """Call ``run(keep)`` ``FIRST_S`` after now, then every ``EVERY_S``, in a daemon
    thread; returns what stops it. A failure is logged and tried again next round."""
    stop = threading.Event()

    def loop() -> None:
        wait = FIRST_S
        while not stop.wait(wait):
            wait = EVERY_S
            try:
                done = run(keep)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                log.warning(
                    "audit retention of %s: prune failed, retried in %gs: %s", where, EVERY_S, exc
                )
                continue
            if done.requests:
                log.info("audit retention of %s: %s", where, done.summary())

    thread = threading.Thread(target=loop, name="nb2prod-audit-retention", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=10)

    return stopper


def _checkpoint(engine: sa.Engine, path: Path) -> tuple[int, int]:
    """``wal_checkpoint(TRUNCATE)``: the WAL bytes it returned, and the database's free bytes."""
    wal = Path(f"{path}-wal")
    before = file_size(wal)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        truncate_wal(cursor)
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        page = cursor.execute("PRAGMA page_size").fetchone()[0]
    finally:
        raw.close()
    return max(0, before - file_size(wal)), free * page


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
