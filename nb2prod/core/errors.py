"""The error tree. Every nb2prod error says what went wrong, where, and how to fix it.

The CLI is the one place that turns these into exit codes (see ``cli.py``); nothing
else prints them. ``where`` is a location a person can find: ``notebook.ipynb: cell 7,
line 3`` for notebook code, ``row 2, column 'age'`` for data.
"""

from __future__ import annotations


class Nb2prodError(Exception):
    """Base class: a user-facing problem with a location and a fix."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  how to fix: {self.fix}"
        return text


class UsageError(Nb2prodError):
    """The command was called wrongly: missing file, not a notebook, bad option."""

    exit_code = 2


class MarkerError(Nb2prodError, TypeError):
    """A marker was used wrongly; raised at decoration time, in the notebook."""


class NotebookError(Nb2prodError):
    """The notebook lacks something a build needs (a model, a save_model call...)."""


class ExportError(Nb2prodError):
    """Marked code cannot be exported as it stands. Collects every problem at once."""

    def __init__(self, problems: list[Nb2prodError]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) exporting the notebook's code:"]
        lines += [f"- {p}" for p in problems]
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return self.what


class ExecutionError(Nb2prodError):
    """The notebook raised while papermill ran it."""


class GateError(Nb2prodError):
    """The saved model does not meet its evaluation gate."""


class ModelStoreError(Nb2prodError):
    """A model version is missing, unreadable, or fails its sha256 pin."""


class BuildError(Nb2prodError):
    """A later build stage failed: generated tests, or ``bentoml build``."""


class ServiceError(Nb2prodError):
    """A request the served service cannot answer as asked. ``status`` is its HTTP status
    (500 for this base class: a fault of the service, not of the request); ``detail``, when
    set, is sent with the message as data (one entry per problem).
    ``nb2prod.runtime.app`` is the one place that turns these into responses."""

    status = 500
    detail: list | None = None


class BadRequest(ServiceError):
    """The request is malformed or its values are wrong: 400. ``detail``, when given,
    lists each problem (where, what, the value sent); ``summary``, when set, is the server
    log's line for it, without the values."""

    status = 400
    summary: str | None = None

    def __init__(
        self,
        what: str,
        *,
        detail: list | None = None,
        where: str | None = None,
        fix: str | None = None,
    ):
        super().__init__(what, where=where, fix=fix)
        self.detail = detail


class Unauthorized(ServiceError):
    """An admin endpoint was called without the right bearer token: 401."""

    status = 401


class NotFound(ServiceError):
    """No such record, review item or endpoint (or the feature is off): 404."""

    status = 404


class MethodNotAllowed(ServiceError):
    """The path exists, the method does not: 405."""

    status = 405


class Conflict(ServiceError):
    """The request contradicts the state (already resolved, version not servable): 409."""

    status = 409


class TooLarge(ServiceError):
    """The request body is over ``NB2PROD_MAX_BODY_BYTES``: 413."""

    status = 413


class UnsupportedMediaType(ServiceError):
    """The request body is not JSON: 415."""

    status = 415


class Unprocessable(ServiceError):
    """Well-formed records that the contract's reject-level checks refuse: 422.
    ``detail`` lists every failing row and check."""

    status = 422

    def __init__(
        self, what: str, *, detail: list, where: str | None = None, fix: str | None = None
    ):
        super().__init__(what, where=where, fix=fix)
        self.detail = detail


class Unavailable(ServiceError):
    """The service cannot keep its promises right now (starting, audit database away): 503."""

    status = 503
