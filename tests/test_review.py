"""The human review queue on real databases: enqueue, pending, resolve, resolve twice."""

from __future__ import annotations

import pytest
from audit_db import SALT, answer, rid

from nb2prod.runtime.feedback import FeedbackLog, LabelError, UnknownRecordError
from nb2prod.runtime.review import AlreadyResolvedError, ReviewQueue


def queue_for(log):
    return ReviewQueue(log, FeedbackLog(log))


def test_enqueue_then_pending_lists_oldest_first(db):
    log = db.open(pii={"email": "hash"}, salt=SALT)
    queue = queue_for(log)
    first, second = rid(), rid()
    for request in (first, second):
        log.record(request, [{"email": "a@b.c", "x": 1}], [answer(0)], latency_ms=1)
    a = queue.enqueue(first, 0, "guardrail", {"email": "a@b.c", "x": 1}, 0)
    b = queue.enqueue(second, 0, "low_confidence", {"email": "a@b.c", "x": 1}, 0)
    assert queue.enqueue(first, 0, "guardrail", {"email": "a@b.c", "x": 1}, 0) == a  # once
    items = queue.pending()
    assert [i.id for i in items] == [a, b]
    assert [(i.request_id, i.row, i.reason) for i in items] == [
        (first, 0, "guardrail"), (second, 0, "low_confidence")]
    assert items[0].input["email"].startswith("sha256:") and items[0].input["x"] == 1
    assert items[0].output == 0 and items[0].model_version == "demo:v1"
    assert [i.id for i in queue.pending(limit=1)] == [a]


def test_record_queues_rows_in_the_same_transaction(db):
    log = db.open()
    request = rid()
    log.record(request, [{"x": 1}, {"x": 2}, {"x": 3}], [answer(1), answer(0), answer(1)],
               latency_ms=1, review={0: "low_confidence", 2: "guardrail"})
    assert [(i.row, i.reason) for i in queue_for(log).pending()] == [
        (0, "low_confidence"), (2, "guardrail")]


def test_resolve_records_feedback_and_leaves_the_queue(db):
    log = db.open()
    queue = queue_for(log)
    request = rid()
    log.record(request, [{"x": 1}], [answer({"label": 1, "probability": 0.55})], latency_ms=1,
               review={0: "low_confidence"})
    [item] = queue.pending()
    result = queue.resolve(item.id, 0)
    assert (result.request_id, result.row, result.new, result.score) == (request, 0, True, 0.0)
    assert queue.pending() == []
    [stored] = db.rows("feedback")
    assert stored["label"] == 0
    [reviewed] = db.rows("review")
    assert reviewed["label"] == 0 and reviewed["resolved_at"] is not None
    assert queue.feedback.quality("demo:v1")["n"] == 1


def test_resolving_twice_is_a_conflict(db):
    log = db.open()
    queue = queue_for(log)
    request = rid()
    log.record(request, [{"x": 1}], [answer(1)], latency_ms=1, review={0: "guardrail"})
    [item] = queue.pending()
    queue.resolve(item.id, 1)
    with pytest.raises(AlreadyResolvedError, match=f"review item {item.id} was resolved") as err:
        queue.resolve(item.id, 0)
    assert err.value.status == 409 and "send feedback" in err.value.fix
    assert db.rows("feedback")[0]["label"] == 1  # the first verdict stands


def test_unknown_items_and_records_are_not_found(db):
    log = db.open()
    queue = queue_for(log)
    with pytest.raises(UnknownRecordError, match="no review item 4242") as err:
        queue.resolve(4242, 1)
    assert err.value.status == 404
    orphan = queue.enqueue("never-audited", 0, "guardrail", {"x": 1}, 1)
    with pytest.raises(UnknownRecordError, match="no audited answer"):
        queue.resolve(orphan, 1)
    assert [i.id for i in queue.pending()] == [orphan]  # still waiting


def test_a_bad_label_leaves_the_item_pending(db):
    log = db.open()
    queue = queue_for(log)
    log.record(rid(), [{"x": 1}], [answer(1)], latency_ms=1, review={0: "guardrail"})
    [item] = queue.pending()
    with pytest.raises(LabelError):
        queue.resolve(item.id, {"label": 1})
    assert [i.id for i in queue.pending()] == [item.id]
    assert db.rows("feedback") == []


def test_a_verdict_must_be_a_class_and_is_stored_as_one(db):
    log = db.open()
    queue = ReviewQueue(log, FeedbackLog(log, classes=(0, 1)))
    log.record(rid(), [{"x": 1}], [answer(1)], latency_ms=1, review={0: "guardrail"})
    [item] = queue.pending()
    for bad in ("definitely-not-a-class", "1", "x" * 300):
        with pytest.raises(LabelError) as err:
            queue.resolve(item.id, bad)
        assert err.value.status == 400
    with pytest.raises(LabelError, match="the classes are 0, 1"):
        queue.resolve(item.id, 7)
    assert [i.id for i in queue.pending()] == [item.id]
    assert queue.resolve(item.id, 1.0).label == 1
    [stored] = db.rows("feedback")
    assert stored["label"] == 1 and type(stored["label"]) is int
    assert [r["label"] for r in db.rows("review")] == [1]


def test_review_items_are_spooled_with_their_audit_record(db):
    log = db.open()
    with db.down():
        request = rid()
        log.record(request, [{"x": 1}], [answer(1)], latency_ms=1, review={0: "guardrail"})
    log.flush()
    [item] = queue_for(log).pending()
    assert (item.request_id, item.reason) == (request, "guardrail")
