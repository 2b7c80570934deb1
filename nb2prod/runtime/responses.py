"""The one place where a served error becomes a response: its status and
``{"error": what, "detail": [...]}`` (``app.py`` for nb2prod's routes, ``wire.py`` for
``/predict`` and ``/feedback``)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from starlette.responses import Response

from nb2prod.core.errors import ServiceError, Unauthorized


def error_response(exc: ServiceError) -> Response:
    """The response for a served error: its status, ``{"error": what}`` and, when the error
    has one, ``"detail"`` (where and how to fix are in ``what``, or for the server log)."""
    body: dict[str, Any] = {"error": exc.what}
    if exc.detail is not None:
        body["detail"] = exc.detail
    headers = {"www-authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return json_response(body, exc.status, headers)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON, written by ``json.dumps`` as it always was: a NaN in a report is
    sent as ``NaN`` rather than failing the request."""
    return Response(json.dumps(body), status, headers, media_type="application/json")
