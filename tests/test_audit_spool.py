"""The local spool file on its own: counting, bounds, and a file several workers share
(two ``Spool`` objects on one path see each other's appends as two processes do)."""

from __future__ import annotations

import os
import uuid

import pytest

from nb2prod.runtime.audit import SpoolFullError
from nb2prod.runtime.audit import spool as spool_module
from nb2prod.runtime.audit.spool import Spool


def entry(size: int = 0) -> dict:
    """An audit-like entry: a fresh request id first, as the audit log's entries have."""
    return {"audit": [{"request_id": uuid.uuid4().hex, "pad": "x" * size}], "review": []}


def test_two_workers_count_each_others_entries(tmp_path):
    a, b = Spool(tmp_path / "s.jsonl"), Spool(tmp_path / "s.jsonl")
    for i in range(7):
        (a if i % 2 else b).append(entry())
        assert len(a) == len(b) == i + 1
    moved: list = []
    assert b.drain(moved.extend) == 7 and len(moved) == 7
    assert len(a) == len(b) == 0


def test_a_spool_drained_and_refilled_elsewhere_is_counted_again_whole(tmp_path):
    """Worker a last saw 3 entries; b drained them and appended 5 longer ones, so the
    file grew past where a looked: a must not add b's tail to its stale 3."""
    a, b = Spool(tmp_path / "s.jsonl"), Spool(tmp_path / "s.jsonl")
    for _ in range(3):
        a.append(entry())
    assert len(a) == 3
    b.drain(lambda entries: None)
    for _ in range(5):
        b.append(entry(200))
    assert len(a) == 5
    with pytest.raises(SpoolFullError, match=r"full \(5 request"):
        Spool(tmp_path / "s.jsonl", max_entries=5).append(entry())


def test_another_workers_appends_are_read_not_the_whole_file(tmp_path, monkeypatch):
    """A shared 8 MB spool was re-read whole by every append of the other worker."""
    path = tmp_path / "s.jsonl"
    a, b = Spool(path, max_bytes=1 << 30), Spool(path, max_bytes=1 << 30)
    for _ in range(800):
        a.append(entry(10_000))  # ~8 MB
    assert len(b) == 800
    read: list[int] = []
    pread = os.pread
    monkeypatch.setattr(spool_module.os, "pread",
                        lambda fd, n, offset: read.append(n) or pread(fd, n, offset))
    a.append(entry(10_000))
    b.append(entry(10_000))
    assert len(a) == len(b) == 802
    assert max(read) < 100_000, read  # one entry (~10 KB), never the 8 MB file


def test_a_torn_last_line_counts_once_and_is_ended_by_the_next_append(tmp_path):
    path = tmp_path / "s.jsonl"
    a, b = Spool(path), Spool(path)
    a.append(entry())
    with path.open("ab") as f:
        f.write(b'{"audit": [{"request_id": "torn')  # a crash mid-append
    assert len(b) == 2  # the fragment counts until a drain drops it
    b.append(entry())
    assert len(a) == len(b) == 3
    kept: list = []
    assert a.drain(kept.extend) == 2  # the fragment is dropped, the entries kept


def test_limits_are_checked_before_anything_is_written(tmp_path):
    path = tmp_path / "s.jsonl"
    spool = Spool(path, max_entries=2, max_bytes=10_000)
    spool.append(entry())
    with pytest.raises(SpoolFullError, match="full"):
        spool.append(entry(20_000))  # over max_bytes
    spool.append(entry())
    with pytest.raises(SpoolFullError, match=r"limits 2 request"):
        spool.append(entry())
    assert len(path.read_text().splitlines()) == 2
    with pytest.raises(Exception, match="must be positive"):
        Spool(path, max_entries=0)
