"""nb2prod's HTTP surface beside BentoML's APIs: one Starlette app, one request guard, and
the one place where served errors become responses.

- ``ENDPOINTS`` (``endpoints.py``) are nb2prod's own routes (``GET /model``, ``GET /drift``,
  the admin routes), routed by ``make_app`` and documented in ``/docs.json`` from the same
  table (``openapi.py``). The app is mounted in the BentoML service, whose ``/predict``,
  ``/feedback``, ``/metrics``, ``/readyz`` and ``/livez`` match first.
- ``/admin/...`` needs ``Authorization: Bearer $NB2PROD_ADMIN_TOKEN`` (``authorize``, the
  one check, in constant time); with the variable unset the admin routes are disabled
  (404 saying so), never open.
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
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nb2prod.core import settings
from nb2prod.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    TooLarge,
    Unauthorized,
)
from nb2prod.runtime.endpoints import APIS, ENDPOINTS
from nb2prod.runtime.openapi import DocumentedApp, Endpoint
from nb2prod.runtime.responses import error_response, json_response
from nb2prod.runtime.wire import Direct

log = logging.getLogger("nb2prod")
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def authorize(request: Request) -> None:
    """The one check of the admin token: ``NotFound`` while none is set, ``Unauthorized``
    unless the request carries it. Compared in constant time, so response times do not
    tell how much of a guess was right."""
    token = settings.current().admin_token
    if not token:
        raise NotFound("admin endpoints are disabled: set NB2PROD_ADMIN_TOKEN to enable them")
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
    # a middleware, not a route: BentoML's routes for its APIs would match first
    svc.add_asgi_middleware(Direct, handlers=dict(direct), max_body=max_body)


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
    return DocumentedApp(ENDPOINTS, APIS, routes=routes, exception_handlers={405: _wrong_method})


def _route(endpoint: Endpoint, handler: Callable[..., Any], max_body: int) -> Callable:
    async def answer(request: Request) -> Response:
        try:
            if endpoint.admin:
                authorize(request)
            args = dict(request.path_params)
            if endpoint.body is not None:
                args["body"] = await read_json(request.receive, max_body)
            return json_response(await anyio.to_thread.run_sync(functools.partial(handler, **args)))
        except ServiceError as exc:
            return error_response(exc)
        except Exception:  # a bug: say so at once (BentoML would hold it 30 s, then 500)
            log.exception("%s %s failed", request.method, request.url.path)
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
                f"no admin route {request.method} {request.url.path}; the admin routes are {known}"
            )
        )

    return refuse


async def _wrong_method(request: Request, exc: HTTPException) -> Response:
    # Starlette's router raises this for a path that is routed, with a method that is not
    allowed = sorted(set((exc.headers or {}).get("Allow", "").split(", ")) - {"", "HEAD"})
    return error_response(MethodNotAllowed(f"use {' or '.join(allowed)} {request.url.path}"))


async def read_body(receive: Callable[..., Any], limit: int) -> bytes:
    """The whole request body, refused (``TooLarge``) as soon as it passes ``limit``."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise TooLarge(
                f"request body is over the limit of {limit} bytes "
                "(NB2PROD_MAX_BODY_BYTES); send less"
            )
        more = message.get("more_body", False)
    return b"".join(chunks)


async def read_json(receive: Callable[..., Any], limit: int) -> Any:
    """The request body parsed as JSON; an empty body is ``{}``."""
    raw = await read_body(receive, limit)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
