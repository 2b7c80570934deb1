"""The acceptor that shares a serve's connections between its workers (runtime/balance.py),
on real sockets in this process; tests/test_workers.py serves it with 2 workers."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from nb2prod.runtime import balance
from nb2prod.runtime.balance import Acceptor, Slots


class Made(asyncio.Protocol):
    """Records when uvicorn's protocol would have got the connection."""

    times: list[float] = []

    def connection_made(self, transport):
        Made.times.append(time.monotonic())
        transport.close()


def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def accept_one(slots, held_here, sibling_held, seconds=0.5):
    """Connect once to an Acceptor (worker 1) beside a live sibling (worker 2) holding
    ``sibling_held``; the seconds from connect to connection_made, or None if never."""
    Made.times = []
    sock = listener()
    slots.publish(2, sibling_held)
    acceptor = Acceptor(sock, Made, lambda: held_here, slots, index=1)
    try:
        client = socket.socket()
        client.setblocking(False)
        start = time.monotonic()
        await asyncio.get_running_loop().sock_connect(client, sock.getsockname())
        deadline = start + seconds
        while not Made.times and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        client.close()
        return Made.times[0] - start if Made.times else None
    finally:
        acceptor.close()
        sock.close()


def test_slots_name_the_fewest_connections_of_a_live_sibling(tmp_path):
    slots = Slots(tmp_path / "s.slots")
    assert slots.fewest_elsewhere(1) is None
    slots.publish(1, 0)
    slots.publish(2, 5)
    slots.publish(3, 3)
    assert slots.fewest_elsewhere(1) == 3 and slots.fewest_elsewhere(3) == 0
    again = Slots(tmp_path / "s.slots")  # another worker's view of the same file
    assert again.fewest_elsewhere(2) == 0


def test_a_sibling_that_stopped_refreshing_is_not_waited_for(tmp_path, monkeypatch):
    slots = Slots(tmp_path / "s.slots")
    slots.publish(2, 0)
    monkeypatch.setattr(balance, "LIVE_S", 0.05)
    time.sleep(0.1)
    assert slots.fewest_elsewhere(1) is None


def test_a_worker_holding_no_more_than_its_siblings_accepts_at_once(tmp_path):
    took = asyncio.run(accept_one(Slots(tmp_path / "s.slots"), held_here=2, sibling_held=2))
    assert took is not None and took < balance.MAX_DEFER_S


def test_a_worker_holding_more_leaves_the_connection_then_takes_it_if_nobody_does(tmp_path):
    # The sibling is live but never accepts (busy, say): the client waits MAX_DEFER_S, no more.
    took = asyncio.run(accept_one(Slots(tmp_path / "s.slots"), held_here=3, sibling_held=0))
    assert took is not None and balance.MAX_DEFER_S <= took < 10 * balance.MAX_DEFER_S


def test_a_closed_acceptor_accepts_nothing(tmp_path):
    async def run():
        Made.times = []
        sock = listener()
        acceptor = Acceptor(sock, Made, lambda: 0, Slots(tmp_path / "s.slots"), index=1)
        acceptor.close()
        await acceptor.wait_closed()
        client = socket.create_connection(sock.getsockname())  # the kernel's backlog takes it
        await asyncio.sleep(0.1)
        client.close()
        sock.close()
        return Made.times

    assert asyncio.run(run()) == []


def test_tables_of_serves_that_ended_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    first = balance.slots_path(os.getpid())
    first.touch()
    gone = first.with_name(f"{socket.gethostname()}-{ended.pid}.slots")
    gone.touch()
    assert balance.slots_path(os.getpid()) == first
    assert first.exists() and not gone.exists()


@pytest.mark.parametrize("index, arbiter, enabled", [(None, 1, True), (1, None, True),
                                                     (1, 1, False)])
def test_outside_a_worker_or_when_off_uvicorn_accepts_as_it_always_did(index, arbiter, enabled):
    assert balance.install(index, arbiter, enabled) is False


def test_a_failed_accept_is_said_once_and_tried_again_later(tmp_path, caplog):
    # Out of file descriptors, the socket stays readable: no busy loop, no flood of lines.
    class OutOfDescriptors(socket.socket):
        failures = [OSError(24, "Too many open files")]

        def accept(self):
            if self.failures:
                raise self.failures.pop()
            return super().accept()

    async def run():
        Made.times = []
        sock = OutOfDescriptors()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        acceptor = Acceptor(sock, Made, lambda: 0, Slots(tmp_path / "s.slots"), index=1)
        client = socket.create_connection(sock.getsockname())
        await asyncio.sleep(balance.PAUSE_S / 2)
        first = list(Made.times)
        await asyncio.sleep(balance.PAUSE_S * 2)
        acceptor.close()
        client.close()
        sock.close()
        return first, Made.times

    first, later = asyncio.run(run())
    assert first == [] and len(later) == 1
    assert [r.getMessage() for r in caplog.records if "accept failed" in r.getMessage()] == [
        "nb2prod: accept failed: [Errno 24] Too many open files; trying again in 0.1s"]
