"""Close a connection whose request does not arrive in time, so slow clients cannot hold
the service's connections.

uvicorn (under BentoML) has no deadline for receiving a request: its keep-alive timer runs
only after a response and stops at the first byte received, so a client that connects and
sends nothing, or half a request's headers, or part of a body, holds the connection (and a
file descriptor) for as long as it likes. BentoML's traffic timeout starts only once the
headers are complete.

``install(seconds)`` gives uvicorn's default ("auto") HTTP protocol, httptools' or h11's,
a read deadline: from the moment a connection opens, and again from the end of each response,
the client has ``seconds`` to send the whole next request, headers and body, or the
connection is closed. Time the service spends answering does not count. An idle
keep-alive connection is closed sooner, after uvicorn's ``--timeout-keep-alive`` (5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("nb2prod")
LOG_EVERY_S = 60.0  # a flood of slow clients is one line a minute, not one per connection


class _Tally:
    """How many connections were closed for slowness, logged at most once a minute."""

    def __init__(self) -> None:
        self.closed, self.logged_at = 0, float("-inf")

    def count(self, seconds: float) -> None:
        self.closed += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_S:
            log.warning(
                "nb2prod: closed %d connection(s) that did not send a whole request within "
                "%gs (NB2PROD_READ_TIMEOUT_S)",
                self.closed,
                seconds,
            )
            self.closed, self.logged_at = 0, now


def guarded(base: type, seconds: float) -> type:
    """A subclass of uvicorn's HTTP protocol ``base`` (``H11Protocol`` or
    ``HttpToolsProtocol``) that closes a connection whose request is not received within
    ``seconds``."""
    tally = _Tally()

    class ReadDeadline(base):
        read_timeout_s = seconds
        guarded = base

        def connection_made(self, transport: Any) -> None:
            self._read_timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._disarm_if_received()

        def on_response_complete(self) -> None:
            self._arm()  # the next request has its own deadline
            super().on_response_complete()
            self._disarm_if_received()  # a pipelined request may be here already

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _disarm_if_received(self) -> None:
            if self._received():
                self._disarm()

        def _received(self) -> bool:
            raise NotImplementedError

        def _too_slow(self) -> None:
            self._read_timer = None
            if not self.transport.is_closing():
                tally.count(seconds)
                self.transport.close()

    if hasattr(base, "on_message_complete"):  # httptools: the parser says when a request ends

        class Guarded(ReadDeadline):
            # requests received whole and responses sent: a request is waiting (or being
            # answered) while more came in than went out; pipelined ones count too
            _requests = _responses = 0

            def on_message_complete(self) -> None:
                super().on_message_complete()
                self._requests += 1

            def on_response_complete(self) -> None:
                self._responses += 1
                super().on_response_complete()

            def _received(self) -> bool:
                return self._requests > self._responses

    else:  # h11: the connection's state says it
        import h11

        # the request is in (or the connection is a WebSocket now): the deadline is met
        received = (
            h11.DONE,
            h11.MUST_CLOSE,
            h11.CLOSED,
            h11.MIGHT_SWITCH_PROTOCOL,
            h11.SWITCHED_PROTOCOL,
        )

        class Guarded(ReadDeadline):  # type: ignore[no-redef]
            def _received(self) -> bool:
                return self.conn.their_state in received

    Guarded.__qualname__ = Guarded.__name__ = f"ReadDeadline{base.__name__}"
    return Guarded


def auto_protocol() -> type | None:
    """The HTTP protocol uvicorn's "auto" picks: httptools' when it is installed, else
    h11's (None: not a uvicorn this was written for)."""
    try:
        from uvicorn.protocols.http import h11_impl
    except ImportError:
        return None
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http import httptools_impl
    except ImportError:
        return h11_impl.H11Protocol
    return httptools_impl.HttpToolsProtocol


def install(seconds: float | None, protocol: type | None = None) -> bool:
    """Serve uvicorn's "auto" HTTP protocol (or ``protocol``) with a ``seconds`` read
    deadline (None: leave uvicorn as it is). BentoML's worker imports the service before
    it configures uvicorn, so doing this at import is in time. False when this uvicorn
    does not look like the one this was written for (serving goes on without it)."""
    if not seconds:
        return False
    try:
        from uvicorn.protocols.http import auto
    except ImportError:
        return False
    base = protocol or auto_protocol()
    needed = ("connection_made", "data_received", "on_response_complete", "connection_lost")
    if base is None or not all(hasattr(base, name) for name in needed):
        log.warning("nb2prod: this uvicorn has no known HTTP protocol; no read deadline")
        return False
    current = auto.AutoHTTPProtocol
    if (
        getattr(current, "read_timeout_s", None) == seconds
        and getattr(current, "guarded", None) is base
    ):
        return True  # installed already (the arbiter and a reload import the service again)
    auto.AutoHTTPProtocol = guarded(base, seconds)
    return True
