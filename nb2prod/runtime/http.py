"""HTTP around the BentoML APIs: the request guard and the endpoints BentoML cannot
declare (``GET`` routes, token-protected admin routes), as one ASGI middleware.

- ``POST`` bodies must be JSON (415 otherwise) and at most ``NB2PROD_MAX_BODY_BYTES``
  (413; default 10 MiB), checked before BentoML parses anything.
- ``/admin/...`` needs ``Authorization: Bearer $NB2PROD_ADMIN_TOKEN``; with the variable
  unset the admin routes are disabled (404 saying so), never open.
- ``GET`` routes are served from ``routes``: path -> zero-argument function returning a
  JSON-able value. Admin routes receive the parsed JSON body and path remainder.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
from typing import Any, Awaitable, Callable

import anyio

log = logging.getLogger("nb2prod")
DEFAULT_MAX_BODY = 10 * 1024 * 1024
Handler = Callable[..., Any]


class HTTPError(Exception):
    """An error with a status code and a message safe to show the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def send_json(send: Callable[..., Awaitable[None]], status: int, body: Any,
                    headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: dict, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")


class Endpoints:
    """ASGI middleware: guard POST bodies, serve GET routes and token-protected admin routes."""

    def __init__(self, app: Any, get_routes: dict[str, Handler],
                 admin_routes: dict[tuple[str, str], Handler]):
        self.app = app
        self.get_routes = get_routes
        self.admin_routes = admin_routes  # (method, path prefix) -> handler(body, rest)
        self.max_body = int(os.environ.get("NB2PROD_MAX_BODY_BYTES", DEFAULT_MAX_BODY))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        try:
            if path.startswith("/admin"):
                return await self._admin(scope, receive, send, path, method)
            if path in self.get_routes:
                if method not in ("GET", "HEAD"):
                    raise HTTPError(405, f"use GET {path}")
                return await send_json(send, 200, await _in_thread(self.get_routes[path]))
            if method == "POST" and self._check_body(scope):
                receive = await self._buffered(receive)
        except HTTPError as exc:
            return await send_json(send, exc.status, {"error": exc.message})
        except Exception:  # a bug: say so at once (BentoML would hold it 30 s, then 500)
            log.exception("%s %s failed", method, path)
            return await send_json(send, 500, {"error": "internal error; see the server log"})
        return await self.app(scope, receive, send)

    def _check_body(self, scope: dict) -> bool:
        """Refuse non-JSON or oversized bodies; True when the size is not declared."""
        kind = _header(scope, b"content-type").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPError(415, f"request bodies must be JSON (content-type: application/json), "
                                 f"got {kind or 'no content-type'}")
        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > self.max_body:
            raise HTTPError(413, f"request body of {length} bytes is over the limit of "
                                 f"{self.max_body} (NB2PROD_MAX_BODY_BYTES); send fewer records")
        return not length.isdigit()

    async def _buffered(self, receive: Any) -> Any:
        """Read a body sent without content-length (chunked), stopping at the limit, and
        hand BentoML a receive() that replays it."""
        body = await _read_body(receive, self.max_body)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()  # e.g. http.disconnect
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return replay

    async def _admin(self, scope: dict, receive: Any, send: Any, path: str, method: str) -> None:
        token = os.environ.get("NB2PROD_ADMIN_TOKEN", "")
        if not token:
            raise HTTPError(404, "admin endpoints are disabled: set NB2PROD_ADMIN_TOKEN to "
                                 "enable them")
        given = _header(scope, b"authorization")
        if not (given.startswith("Bearer ")
                and hmac.compare_digest(given[7:].strip().encode(), token.encode())):
            return await send_json(send, 401, {"error": "admin endpoints need "
                                               "Authorization: Bearer <NB2PROD_ADMIN_TOKEN>"},
                                   [(b"www-authenticate", b"Bearer")])
        for (verb, prefix), handler in self.admin_routes.items():
            if method == verb and (path == prefix or path.startswith(prefix + "/")):
                body = await _read_json(receive) if method == "POST" else None
                return await send_json(send, 200, await _in_thread(handler, body,
                                                                   path[len(prefix) + 1:]))
        raise HTTPError(404, f"no admin route {method} {path}")


async def _in_thread(handler: Handler, *args: Any) -> Any:
    # Handlers read databases and files: off the event loop, so predictions never wait on them.
    return await anyio.to_thread.run_sync(functools.partial(handler, *args))


async def _read_body(receive: Any, limit: int = DEFAULT_MAX_BODY) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _read_json(receive: Any) -> Any:
    raw = await _read_body(receive)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise HTTPError(400, "the request body is not valid JSON") from None
