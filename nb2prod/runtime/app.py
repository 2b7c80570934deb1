"""nb2prod's HTTP surface beside BentoML's APIs: one Starlette app, one request guard, and
the one place where served errors become responses.

- ``ENDPOINTS`` (``endpoints.py``) are nb2prod's own routes (``GET /model``, ``GET /drift``,
  the admin routes), routed by ``make_app`` and documented in ``/docs.json`` from the same
  table (``openapi.py``). The app is mounted in the BentoML service, whose ``/predict``,
  ``/feedback``, ``/metrics``, ``/readyz`` and ``/livez`` match first.
- Routes match exactly: a path with ``.`` or ``..`` segments or an empty one (``//``),
  however encoded, is no route (404), never resolved to another (``ExactPaths``).
- ``/admin/...`` needs ``Authorization: Bearer $NB2PROD_ADMIN_TOKEN`` (``authorize``, the
  one check, in constant time); with the variable unset, or shorter than
  ``MIN_ADMIN_TOKEN`` characters (guessable), the admin routes are disabled (404 saying
  why), never open. An admin ``POST`` sends JSON (``content-type: application/json``)
  or no body at all: anything else is 415, as for ``/predict``; a body JSON cannot
  parse (bad syntax, bad UTF-8, nested too deep) is 400.
- ``wire.Direct`` answers ``POST /predict`` and ``POST /feedback`` from the request's bytes,
  before BentoML's own routes for those APIs (which stay, for the docs).
- ``error_response`` turns a ``ServiceError`` into its status and ``{"error", "detail"}``
  body, for these routes and for the BentoML APIs alike. Anything else a route raises is
  a bug: logged with its traceback, answered 500 at once, never shown to the client.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from typing import Any, Callable, Mapping

import anyio
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nb2prod.core import settings
from nb2prod.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
)
from nb2prod.runtime.endpoints import APIS, ENDPOINTS
from nb2prod.runtime.logs import safe
from nb2prod.runtime.openapi import DocumentedApp, Endpoint
from nb2prod.runtime.responses import error_response, json_response
from nb2prod.runtime.wire import ClientGone, read_body

log = logging.getLogger("nb2prod")
MIN_ADMIN_TOKEN = 16  # characters: shorter tokens are guessable
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def admin_disabled(token: str | None) -> str | None:
    """Why the admin endpoints are off with this ``NB2PROD_ADMIN_TOKEN``, or None when
    they are on: unset, or too short to withstand guessing."""
    if not token:
        return "set NB2PROD_ADMIN_TOKEN to enable them"
    if len(token) < MIN_ADMIN_TOKEN:
        return (
            f"NB2PROD_ADMIN_TOKEN is {len(token)} characters; it must be at least "
            f"{MIN_ADMIN_TOKEN} (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return None


def authorize(request: Request) -> None:
    """The one check of the admin token: ``NotFound`` while none (or a too short one) is
    set, ``Unauthorized`` unless the request carries it. Compared in constant time, so
    response times do not tell how much of a guess was right."""
    token = settings.current().admin_token
    why = admin_disabled(token)
    if why is not None or token is None:
        raise NotFound(f"admin endpoints are disabled: {why}")
    given = request.headers.get("authorization", "")
    if not (
        given.startswith("Bearer ")
        and hmac.compare_digest(given[7:].strip().encode(), token.encode())
    ):
        raise Unauthorized("admin endpoints need Authorization: Bearer <NB2PROD_ADMIN_TOKEN>")


def attach(
    svc: Any,
    handlers: Mapping[str, Callable[..., Any]],
    max_body: int,
    direct: Mapping[str, Any],
) -> None:
    """Mount the app for ``handlers`` in the BentoML service ``svc`` (made with
    ``service_class=DocumentedService``, so ``/docs.json`` lists its routes), and let
    ``wire.Direct`` answer the routes in ``direct`` (``/predict``, ``/feedback``)."""
    svc.mount_asgi_app(make_app(handlers, max_body), name="nb2prod")
    # in front of BentoML's app, not a route in it: BentoML's routes for its APIs would
    # match first, and its middleware stack costs more than the model (front.py)
    svc.inner.__nb2prod_direct__ = {"handlers": dict(direct), "max_body": max_body}


def make_app(handlers: Mapping[str, Callable[..., Any]], max_body: int) -> DocumentedApp:
    """The Starlette app for ``ENDPOINTS``. ``handlers[endpoint.name]`` answers one; it gets
    the path parameters as keyword arguments, and ``body`` (the parsed JSON) when the
    endpoint takes one, and returns a JSON-able value or raises ``ServiceError``. Handlers
    run in a worker thread: they read databases and files, and predictions must never wait
    on them."""
    routes = [
        Route(e.path, _route(e, handlers[e.name], max_body), methods=[e.method], name=e.name)
        for e in ENDPOINTS
    ]
    admin = [e for e in ENDPOINTS if e.admin]
    # any other /admin path or method: authorized first (as the routes are), then a 404
    # listing them; after the routes, so it only matches what they do not
    routes += [
        Route(path, _no_admin_route(admin), methods=ANY_METHOD)
        for path in ("/admin", "/admin/{rest:path}")
    ]
    return DocumentedApp(
        ENDPOINTS,
        APIS,
        routes=routes,
        exception_handlers={405: _wrong_method},
        middleware=[Middleware(ExactPaths)],
    )


class ExactPaths:
    """ASGI middleware: a path with a ``.``, ``..`` or empty segment is no route (404).

    Nothing here normalises paths, so ``/admin/review/../reload`` must not be taken for
    either route it names; ``scope["path"]`` is already percent-decoded, so ``%2e%2e``
    is caught too."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _not_exact(scope["path"]):
            refused = NotFound(
                f"no route {safe(scope['path'])}: paths are matched exactly, "
                "without '.', '..' or empty segments"
            )
            return await error_response(refused)(scope, receive, send)
        await self.app(scope, receive, send)


def _not_exact(path: str) -> bool:
    segments = path.split("/")[1:]
    return any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1:] in (["."], [".."])


def _route(endpoint: Endpoint, handler: Callable[..., Any], max_body: int) -> Callable:
    async def answer(request: Request) -> Response:
        try:
            if endpoint.admin:
                authorize(request)
            args = dict(request.path_params)
            if endpoint.method == "POST":
                body = await read_admin_body(request, max_body)
                if endpoint.body is not None:
                    args["body"] = body
            return json_response(await anyio.to_thread.run_sync(functools.partial(handler, **args)))
        except ClientGone:  # nobody to answer
            return Response(status_code=400)
        except ServiceError as exc:
            return error_response(exc)
        except Exception:  # a bug: say so at once (BentoML would hold it 30 s, then 500)
            log.exception("%s %s failed", request.method, safe(request.url.path))
            return error_response(ServiceError("internal error; see the server log"))

    return answer


def _no_admin_route(admin: list[Endpoint]) -> Callable:
    known = ", ".join(f"{e.method} {e.path}" for e in admin)

    async def refuse(request: Request) -> Response:
        try:
            authorize(request)
        except ServiceError as exc:
            return error_response(exc)
        return error_response(
            NotFound(
                f"no admin route {safe(request.method, 20)} {safe(request.url.path)}; "
                f"the admin routes are {known}"
            )
        )

    return refuse


async def _wrong_method(request: Request, exc: HTTPException) -> Response:
    # Starlette's router raises this for a path that is routed, with a method that is not
    allowed = sorted(set((exc.headers or {}).get("Allow", "").split(", ")) - {"", "HEAD"})
    return error_response(MethodNotAllowed(f"use {' or '.join(allowed)} {request.url.path}"))


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON (empty: ``{}``), or ``BadRequest``."""
    try:
        return json.loads(raw) if raw else {}
    except RecursionError:
        raise BadRequest("the request body is nested too deeply to parse") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest("the request body is not valid JSON") from None


async def read_admin_body(request: Request, limit: int) -> Any:
    """An admin ``POST``'s body: JSON (``{}`` when empty), or no body without a
    content-type; ``UnsupportedMediaType`` (415) for any other content-type, or a body
    sent without one: the rule ``wire.Direct`` applies to ``/predict``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json":
        raise UnsupportedMediaType(
            f"admin request bodies must be JSON (content-type: application/json), "
            f"got {safe(kind, 60)}"
        )
    raw = await read_body(request.receive, limit)
    if raw and not kind:
        raise UnsupportedMediaType(
            "admin request bodies must be JSON (content-type: application/json), "
            "got a body with no content-type"
        )
    return parse_json(raw)
