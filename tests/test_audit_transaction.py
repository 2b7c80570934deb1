"""The audit log's interface for feedback and review, ``AuditLog.transaction()``, on real
databases (SQLite and PostgreSQL, as in test_audit.py)."""

from __future__ import annotations

import sqlite3

import pytest
from audit_db import SALT, Db, answer, rid

from nb2prod.runtime.audit import Answered, AuditUnavailable, ReviewItem, Verdict


def test_answered_is_the_audited_request_or_none(db):
    log = db.open()
    request = rid()
    log.record(request, [{"x": 1}, {"x": 2}], [answer(1), answer(0, source="fallback")],
               latency_ms=1)
    with log.transaction(readonly=True) as tx:
        found = tx.answered(request)
        assert tx.answered("no-such-request") is None
    assert isinstance(found, Answered)
    assert (found.request_id, found.model_version) == (request, "demo:v1")
    assert [a["prediction"] for a in found.output] == [1, 0]
    assert found.output[1]["source"] == "fallback"


def test_write_label_inserts_then_replaces_and_scores_average_per_version_and_kind(db):
    log = db.open()
    request = rid()
    log.record(request, [{"x": 1}, {"x": 2}], [answer(1), answer(1)], latency_ms=1)
    label = dict(model_version="demo:v1", source="model", kind="classifier")
    with log.transaction() as tx:
        assert tx.write_label(request, 0, label=1, score=1.0, **label) is True
        assert tx.write_label(request, 1, label=0, score=0.0, **label) is True
        assert tx.write_label(request, 1, label=1, score=1.0, **label) is False  # replaced
    with log.transaction(readonly=True) as tx:
        assert tx.scores("demo:v1", "classifier") == (2, 1.0)
        assert tx.scores("demo:v1", "regressor") == (0, None)
        assert tx.scores("demo:v2", "classifier") == (0, None)
    stored = {r["row"]: r for r in db.rows("feedback")}
    assert stored[1]["label"] == 1 and stored[1]["updated_at"] is not None
    assert stored[0]["updated_at"] is None


def test_a_transaction_that_raises_keeps_nothing(db):
    log = db.open()
    request = rid()
    log.record(request, [{"x": 1}], [answer(1)], latency_ms=1, review={0: "guardrail"})
    with log.transaction(readonly=True) as tx:
        [item] = tx.pending_reviews(10)
    with pytest.raises(RuntimeError, match="reviewer gave up"):
        with log.transaction() as tx:
            tx.write_label(request, 0, model_version="demo:v1", source="model",
                           kind="classifier", label=1, score=1.0)
            tx.resolve_review(item.id, 1)
            raise RuntimeError("reviewer gave up")
    assert db.rows("feedback") == []
    with log.transaction(readonly=True) as tx:
        assert tx.review_item(item.id) == (item, None)  # still pending


def test_review_items_queue_once_through_the_pii_policy_and_resolve(db):
    log = db.open(pii={"email": "hash", "name": "drop"}, salt=SALT)
    request = rid()
    record = {"email": "ann@example.org", "name": "Ann", "x": 3}
    with log.transaction() as tx:
        first = tx.queue_review(request, 2, "low_confidence", record,
                                {"label": 1, "echo": "for ann@example.org"})
        assert tx.queue_review(request, 2, "guardrail", record, 0) == first  # once
    with log.transaction(readonly=True) as tx:
        [item] = tx.pending_reviews(10)
        assert tx.review_item(first) == (item, None)
        assert tx.review_item(first + 1000) is None
    assert isinstance(item, ReviewItem)
    assert (item.id, item.request_id, item.row, item.reason) == (first, request, 2,
                                                                  "low_confidence")
    assert item.input["email"].startswith("sha256:") and "name" not in item.input
    assert "ann@example.org" not in str(item.output)
    with log.transaction() as tx:
        tx.resolve_review(first, 1)
    with log.transaction(readonly=True) as tx:
        assert tx.pending_reviews(10) == []
        _, verdict = tx.review_item(first)
    assert isinstance(verdict, Verdict) and verdict.label == 1
    assert verdict.resolved_at is not None


def test_labelled_inputs_are_one_models_labelled_rows_oldest_first(db):
    log = db.open()
    older, newer = rid(), rid()
    log.record(older, [{"x": 1}, {"x": 2}], [answer(1), answer(1)], latency_ms=1)
    log.record(newer, [{"x": 3}], [answer(1)], latency_ms=1)
    other = db.open(model_version="other:v1")
    stranger = rid()
    other.record(stranger, [{"x": 9}], [answer(1)], latency_ms=1)
    label = dict(source="model", kind="classifier", score=1.0)
    with log.transaction() as tx:
        tx.write_label(newer, 0, model_version="demo:v1", label="c", **label)
        tx.write_label(older, 1, model_version="demo:v1", label="b", **label)
        tx.write_label(stranger, 0, model_version="other:v1", label="z", **label)
    with log.transaction(readonly=True) as tx:
        assert tx.labelled_inputs("demo") == [({"x": 2}, "b"), ({"x": 3}, "c")]


def test_readonly_transactions_read_while_a_writer_holds_sqlite(tmp_path):
    """Readers take no write lock; a writer that cannot get it in time is a 503."""
    db = Db("sqlite", tmp_path)
    log = db.open(timeout=0.2)
    request = rid()
    log.record(request, [{"x": 1}], [answer(1)], latency_ms=1)
    locker = sqlite3.connect(db.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with log.transaction(readonly=True) as tx:
            assert tx.answered(request) is not None
        with pytest.raises(AuditUnavailable, match="unreachable") as err:
            with log.transaction() as tx:
                tx.answered(request, lock=True)
        assert err.value.status == 503 and err.value.where == log.url
    finally:
        locker.execute("COMMIT")
        locker.close()
        db.close()
