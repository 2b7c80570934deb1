"""Server logs without client errors' tracebacks or their input values.

BentoML logs every request it refuses (a wrong type, a missing column) at ERROR with a
traceback whose pydantic message repeats the request's values: a busy service's log
fills with tracebacks that are no bug, and with personal data. ``ClientErrors`` turns
those records into one INFO line naming the endpoint, how many problems and where (row,
column, what was wrong), never the values. Server errors are left as they are.
"""

from __future__ import annotations

import logging
from typing import Any

BENTOML_HTTP = "bentoml._internal.server.http_app"  # the logger of BentoML's log_exception


class ClientErrors(logging.Filter):
    """A logging filter that shortens BentoML's records of refused requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a client error's record in place; let every record through."""
        exc = record.exc_info[1] if record.exc_info else None
        summary = _summary(exc) if exc is not None else None
        if summary is not None:
            path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "refused a request to %s: %s", (path, summary)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def _summary(exc: BaseException) -> str | None:
    """What was wrong with the request, without its values; None for a server error."""
    from pydantic import ValidationError
    from starlette.requests import ClientDisconnect

    if isinstance(exc, ClientDisconnect):  # e.g. closed for sending too slowly
        return "the client's connection closed before its request was complete"
    if isinstance(exc, ValidationError):
        first = exc.errors(include_input=False, include_context=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{exc.error_count()} invalid value(s) (400), first at {where}: {first['msg']}"
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return f"{type(exc).__name__} ({code})"
    return None


def install(logger_name: str = BENTOML_HTTP) -> Any:
    """Add the filter to BentoML's HTTP logger, once per process; returns the filter."""
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, ClientErrors):
            return existing
    found = ClientErrors()
    logger.addFilter(found)
    return found
