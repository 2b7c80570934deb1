"""The audit log's errors, and how a driver error is named in their messages."""

from __future__ import annotations

from nb2prod.core.errors import Nb2prodError, Unavailable


class AuditError(Nb2prodError):
    """The audit log cannot be opened, or is used wrongly: at start-up, refuse to start."""


class AuditUnavailable(AuditError, Unavailable):
    """The audit database is away and the record cannot be kept: the service answers 503."""


class SpoolFullError(AuditUnavailable):
    """The spool holds as much as it may; nothing more can be kept locally."""


class DatabaseMoved(Exception):
    """The SQLite file the log has open is no longer the file at its path (removed, moved
    or replaced): what was written there is lost to readers, so the database counts as
    unreachable until it is opened afresh (``watch``)."""


def describe(exc: BaseException) -> str:
    """A driver error's class and first line, e.g. ``OperationalError: connection refused``."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {(str(orig).strip().splitlines() or [''])[0]}"
