"""Server logs a client can neither forge, flood, nor fill with tracebacks.

- ``safe(text)`` is the one way client-controlled text (a path, a key, a value, an
  exception message built from them) reaches a log: control characters escaped (so a
  ``"\\n[ERROR] ..."`` in a key cannot start a log line of its own) and cut at ``limit``
  characters with a marker saying how many more there were.
- ``ClientErrors``: BentoML logs every request it refuses (a wrong type, a missing column)
  at ERROR with a traceback whose pydantic message repeats the request's values: a busy
  service's log fills with tracebacks that are no bug, and with personal data. The filter
  turns those records into one INFO line naming the endpoint, how many problems and where
  (row, column, what was wrong), never the values. Server errors are left as they are.
- ``Tracebacks``: a model (or guardrail, or fallback) that raises on some input raises on
  every request like it. The first failure per (model version, function, exception type)
  is logged with its traceback; the next ones are counted, and one summary line per
  ``NB2PROD_LOG_SUMMARY_S`` seconds says how many there were since.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

BENTOML_HTTP = "bentoml._internal.server.http_app"  # the logger of BentoML's log_exception
BENTOML_ACCESS = "bentoml.access"  # one line per request: its (percent-decoded) path, ...
LIMIT = 200  # characters of one piece of client text in a log line


def safe(text: Any, limit: int = LIMIT) -> str:
    """``text`` (``str()`` of it) fit for one log line: backslashes and control
    characters escaped (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ...), cut after ``limit``
    characters with ``...[+N chars]`` saying how many were left out."""
    text = str(text)
    cut = len(text) - limit
    shown = "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in (text[:limit] if cut > 0 else text)
    )
    return shown + (f"...[+{cut} chars]" if cut > 0 else "")


class ClientErrors(logging.Filter):
    """A logging filter that shortens BentoML's records of refused requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a client error's record in place; let every record through."""
        exc = record.exc_info[1] if record.exc_info else None
        summary = _summary(exc) if exc is not None else None
        if summary is not None:
            path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "refused a request to %s: %s", (safe(path), summary)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def _summary(exc: BaseException) -> str | None:
    """What was wrong with the request, without its values; None for a server error.
    Its only client text, the keys in ``loc``, is escaped and cut (``safe``)."""
    from pydantic import ValidationError
    from starlette.requests import ClientDisconnect

    if isinstance(exc, ClientDisconnect):  # e.g. closed for sending too slowly
        return "the client's connection closed before its request was complete"
    if isinstance(exc, ValidationError):
        first = exc.errors(include_input=False, include_context=False, include_url=False)[0]
        where = ".".join(safe(part, 60) for part in first["loc"])  # keys are the client's
        return f"{exc.error_count()} invalid value(s) (400), first at {where}: {first['msg']}"
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return f"{type(exc).__name__} ({code})"
    return None


class Escaped(logging.Filter):
    """A logging filter that passes every text argument of a record through ``safe``."""

    def __init__(self, limit: int = 4 * LIMIT):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        """Escape and cut the record's text arguments in place; let every record through."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                safe(a, self.limit) if isinstance(a, str) else a for a in record.args
            )
        return True


def install(logger_name: str = BENTOML_HTTP, access: str = BENTOML_ACCESS) -> Any:
    """Add ``ClientErrors`` to BentoML's HTTP logger and ``Escaped`` to its access log,
    once per process; returns the ``ClientErrors`` filter."""
    _add(logging.getLogger(access), Escaped)
    return _add(logging.getLogger(logger_name), ClientErrors)


def _add(logger: logging.Logger, kind: type[logging.Filter]) -> logging.Filter:
    for existing in logger.filters:
        if isinstance(existing, kind):
            return existing
    found = kind()
    logger.addFilter(found)
    return found


class Tracebacks:
    """Logs the first exception per (model version, function, exception type) with its
    traceback, then counts; ``every()`` seconds at most, one summary line of the counts.

    The summary is written by the next failure after the interval, or by ``flush()``
    (a worker closing its model version), so a count is never lost while the process
    runs. The traceback's frames are code; its message is the exception's, escaped
    (``safe``), since it may repeat the request's values.
    """

    def __init__(
        self, every: Callable[[], float] | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.every, self.clock = every or _every, clock
        self._seen: set[tuple[str, str, str]] = set()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._last = clock()
        self._lock = threading.Lock()  # predictions run in several threads

    def failed(
        self, logger: logging.Logger, version: str, site: str, exc: BaseException, what: str
    ) -> None:
        """Record that ``site`` (e.g. ``"predict()"``) raised ``exc`` while serving
        ``version``; ``what`` is the line to log with the first traceback."""
        key = (version, site, type(exc).__name__)
        with self._lock:
            first = key not in self._seen
            if first:
                self._seen.add(key)
            else:
                self._counts[key] = self._counts.get(key, 0) + 1
            due = self._due()
        if first:
            frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip("\n")
            logger.error(
                "%s: %s: %s (%s; the next ones are counted, not logged)\n"
                "Traceback (most recent call last):\n%s",
                what,
                type(exc).__name__,
                safe(exc, 500),
                version,
                frames,
            )
        if due:
            self._summarise(logger, due)

    def flush(self, logger: logging.Logger) -> None:
        """Write the summary of what was counted since the last one, if anything was."""
        with self._lock:
            due = self._take()
        if due:
            self._summarise(logger, due)

    def _due(self) -> dict[tuple[str, str, str], int]:
        if not self._counts or self.clock() - self._last < self.every():
            return {}
        return self._take()

    def _take(self) -> dict[tuple[str, str, str], int]:
        counts, self._counts, self._last = self._counts, {}, self.clock()
        return counts

    @staticmethod
    def _summarise(logger: logging.Logger, counts: dict[tuple[str, str, str], int]) -> None:
        logger.warning(
            "repeated failures since the last summary (tracebacks not repeated): %s",
            "; ".join(
                f"{version} {what}: {name} x{n}" for (version, what, name), n in counts.items()
            ),
        )


def _every() -> float:
    from nb2prod.core import settings

    return settings.current().log_summary_s
