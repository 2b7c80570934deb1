"""Share a serve's connections evenly between its workers (``NB2PROD_BALANCE``).

Why: BentoML's workers all accept on one listening socket, and uvloop accepts every
connection waiting when it wakes. Whichever worker wakes first takes them all, and a
keep-alive connection stays with that worker for its life. Measured with 8 keep-alive
clients and 2 workers (bench/workers.py): one worker got all 8 connections in most
bursts, and 2 workers served no more than 1. A load balancer or client pool with a few
long-lived connections meets the same.

How: each worker accepts on the shared socket itself, one connection at a time, and
publishes how many connections it holds in a slot of a small shared file (one per serve,
in the temporary directory, named after the arbiter). A worker that holds more than some
live sibling leaves a waiting connection to it: it looks again after ``DEFER_S``, and
takes the connection itself once it has waited ``MAX_DEFER_S`` (a sibling that is busy
or stuck must not leave a client waiting). A worker counts as live while it refreshes its
slot (every ``REFRESH_S``); its event loop does that, so a worker whose loop is blocked
gets no new connections. An accepted connection is served by uvicorn's own protocol, as
before; only who accepts it changed.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from nb2prod.runtime.siblings import alive

log = logging.getLogger("nb2prod")
SLOTS = 64  # worker indexes 1..64; a worker beyond accepts as uvicorn would
SLOT = struct.Struct("<iid")  # connections held, pid, monotonic time of the last refresh
DEFER_S = 0.001
MAX_DEFER_S = 0.02
REFRESH_S = 0.1
LIVE_S = 1.0
PAUSE_S = 0.1  # after a failed accept (out of file descriptors, say)


class Slots:
    """The serve's shared table of connections per worker, in ``path`` (created if new)."""

    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOTS * SLOT.size:
                os.ftruncate(fd, SLOTS * SLOT.size)  # zeros: no worker, never refreshed
            self.map = mmap.mmap(fd, SLOTS * SLOT.size)
        finally:
            os.close(fd)

    def publish(self, index: int, held: int) -> None:
        """Worker ``index`` (from 1) holds ``held`` connections, as of now."""
        SLOT.pack_into(self.map, (index - 1) * SLOT.size, held, os.getpid(), time.monotonic())

    def fewest_elsewhere(self, index: int) -> int | None:
        """The fewest connections a live worker other than ``index`` holds; None if none."""
        now, fewest = time.monotonic(), None
        for k, (held, pid, seen) in enumerate(SLOT.iter_unpack(self.map)):
            if k + 1 != index and pid and now - seen < LIVE_S:
                fewest = held if fewest is None else min(fewest, held)
        return fewest


def slots_path(arbiter: int) -> Path:
    """The shared table of the serve whose arbiter is ``arbiter``; files of serves whose
    arbiter is gone are removed on the way."""
    where = Path(tempfile.gettempdir()) / f"nb2prod-connections-{os.getuid()}"
    where.mkdir(mode=0o700, exist_ok=True)
    host = socket.gethostname()
    for old in where.glob(f"{host}-*.slots"):
        pid = old.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != arbiter and not alive(int(pid)):
            old.unlink(missing_ok=True)
    return where / f"{host}-{arbiter}.slots"


class Acceptor:
    """Accepts on ``sock`` for one worker and hands each connection to ``protocol()``;
    stands in for the ``asyncio.Server`` uvicorn keeps (``close``, ``wait_closed``)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: Callable[[], asyncio.Protocol],
        held: Callable[[], int],
        slots: Slots,
        index: int,
        ssl: Any = None,
    ):
        self.sock, self.protocol, self.held, self.slots = sock, protocol, held, slots
        self.index, self.ssl = index, ssl
        self.loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None
        self.closed = False
        self.tasks: set[asyncio.Task] = set()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._ready)
        self._refresh()

    def _holding(self) -> int:
        return self.held() + len(self.tasks)  # accepted, not yet uvicorn's

    def _refresh(self) -> None:
        if not self.closed:
            self.slots.publish(self.index, self._holding())
            self.loop.call_later(REFRESH_S, self._refresh)

    def _ready(self) -> None:
        while not self.closed:
            held = self._holding()
            fewest = self.slots.fewest_elsewhere(self.index)
            now = time.monotonic()
            if fewest is not None and fewest < held:
                self.waiting_since = self.waiting_since or now
                if now - self.waiting_since < MAX_DEFER_S:
                    self.loop.remove_reader(self.sock.fileno())  # look again in DEFER_S
                    self.loop.call_later(DEFER_S, self._resume)
                    return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):  # a sibling took it
                self.waiting_since = None
                return
            except OSError as exc:  # e.g. EMFILE: say so, and look again in PAUSE_S
                log.warning("nb2prod: accept failed: %s; trying again in %gs", exc, PAUSE_S)
                self.loop.remove_reader(self.sock.fileno())  # the socket stays readable
                self.loop.call_later(PAUSE_S, self._resume)
                return
            self.waiting_since = None
            conn.setblocking(False)
            self.slots.publish(self.index, held + 1)
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(self.protocol, conn, ssl=self.ssl)
            )
            self.tasks.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("nb2prod: a connection could not be set up: %s", task.exception())

    def _resume(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._ready)
            self._ready()

    def close(self) -> None:
        """Stop accepting (the socket itself is uvicorn's to close)."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.slots.publish(self.index, 0)

    async def wait_closed(self) -> None:
        """Nothing to wait for: connections already open are uvicorn's."""


def install(index: int | None, arbiter: int | None, enabled: bool) -> bool:
    """In a ``bentoml serve`` worker (``index``, from 1, of the serve of ``arbiter``), have
    uvicorn accept through an :class:`Acceptor`; True if it will."""
    if not enabled or index is None or arbiter is None or index > SLOTS:
        return False
    try:
        from uvicorn.server import Server
    except ImportError:
        return False
    try:
        slots = Slots(slots_path(arbiter))
    except OSError as exc:  # no writable temp directory: uvicorn accepts as it always did
        log.info("nb2prod: connections are not balanced between workers: %s", exc)
        return False
    startup = Server.startup

    async def balanced_startup(self: Any, sockets: list[socket.socket] | None = None) -> None:
        if not sockets:
            return await startup(self, sockets)
        await startup(self, [])  # everything uvicorn does at start, but the listening
        config, state = self.config, self.server_state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(
                config=config, server_state=state, app_state=self.lifespan.state
            )

        self.servers = [
            Acceptor(s, protocol, lambda: len(state.connections), slots, index, config.ssl)
            for s in sockets
        ]

    Server.startup = balanced_startup  # type: ignore[method-assign]
    return True
