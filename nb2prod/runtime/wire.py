"""``POST /predict`` and ``POST /feedback`` straight from the request's bytes.

BentoML's ``@bentoml.api`` path builds pydantic IO models, writes a JSON schema per
answer and hops to a worker thread for every request: about a millisecond, more than
the model takes on one row. ``Direct`` is an ASGI app in front of BentoML's
(``front.in_front``: BentoML's metrics and access log still wrap these routes, tracing
when it exports) that answers these two routes itself:

- the body must be JSON (415), at most ``NB2PROD_MAX_BODY_BYTES`` (413);
- it is validated in one pydantic-core call against the contract's columns, strictly:
  a JSON boolean is not a number, a number sent as a string is refused, an integer
  column takes JSON integers, and unknown keys, at the top or in a record, are refused
  (400, ``detail`` listing every problem by row and column); a large body of an
  all-float contract is first offered to a cheaper decoder (``DirectRoute.fast``,
  ``rows.FloatBodies``) that accepts only what pydantic-core would, and passes anything
  else on to it;
- a small request is answered on the event loop, the model called in the deadline's
  thread and awaited, so the loop keeps serving meanwhile; a large one (over
  ``INLINE_BYTES``) is answered in one worker thread, so it never holds up small ones;
- the answer is encoded once, with orjson.

The ``@bentoml.api`` methods stay: BentoML documents ``/predict`` from them (the real
columns and types in ``/docs.json``), and in-process callers may use them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any, Awaitable, Callable

import anyio
import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from nb2prod.core.errors import (
    BadRequest,
    NotFound,
    ServiceError,
    TooLarge,
    UnsupportedMediaType,
)
from nb2prod.runtime.answers import Label
from nb2prod.runtime.logs import safe
from nb2prod.runtime.responses import error_response

log = logging.getLogger("nb2prod")
MAX_RECORDS = 10_000
INLINE_BYTES = 64 * 1024  # ~100 rows of 30 numbers: answered on the event loop
SHOWN_ERRORS = 20  # problems listed in a 400's detail; the count says how many in all
SHOWN_VALUE = 80  # characters of a refused value shown back to the client
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def predict_request(record: type, name: str) -> TypeAdapter:
    """The validator of a ``/predict`` body: ``{"records": [record, ...]}`` and nothing else."""
    body = TypedDict(  # type: ignore[misc]
        f"{name}PredictRequest",
        {"records": Annotated[list[record], Field(min_length=1, max_length=MAX_RECORDS)]},  # type: ignore[valid-type]
    )
    body.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[attr-defined]
    return TypeAdapter(body)


class FeedbackRequest(TypedDict):
    """A ``/feedback`` body: which answer, and its true label."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    label: Label
    row: NotRequired[Annotated[int, Field(ge=0, le=MAX_RECORDS - 1)]]  # default 0


FEEDBACK = TypeAdapter(FeedbackRequest)


def decode(adapter: TypeAdapter, raw: bytes) -> dict[str, Any]:
    """``raw`` validated by ``adapter``; ``BadRequest`` listing each problem otherwise."""
    try:
        return adapter.validate_json(raw, strict=True)  # strict throughout, nested records too
    except ValidationError as exc:
        raise refusal(exc) from None
    except RecursionError:  # pydantic-core's own limit catches most; never a 500
        raise BadRequest("the request body is nested too deeply") from None


def refusal(exc: ValidationError) -> BadRequest:
    """A 400 naming every problem: where (``loc``: "records", row, column), what, and the
    value sent (shortened), as pydantic found them."""
    problems = exc.errors(include_url=False, include_context=False)
    detail = [
        {
            "loc": [_shown(part) for part in p["loc"]],  # a key may be 1 MB long
            "type": p["type"],
            "msg": p["msg"],
            **(
                {"value": _shown(p["input"])}
                if p["type"] not in ("missing", "json_invalid")
                else {}
            ),
        }
        for p in problems[:SHOWN_ERRORS]
    ]
    first = detail[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    if first["type"] == "json_invalid":
        return BadRequest(f"the request body is not valid JSON: {first['msg']}", detail=detail)
    more = (
        f" ({len(problems)} problems in all; detail lists {len(detail)})"
        if len(problems) > 1
        else ""
    )
    refused = BadRequest(f"invalid request at {where}: {first['msg']}{more}", detail=detail)
    # the server log's line: where and what, never the values (they may be personal data)
    refused.summary = f"{len(problems)} invalid value(s) (400), first at {where}: {first['msg']}"
    return refused


def _shown(value: Any) -> Any:
    """A refused value as the client may see it again: scalars as they came, anything else
    (or a long text) as a shortened text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value, default=str).decode()
        except TypeError:  # orjson refuses integers beyond 64 bits; json writes them
            text = json.dumps(value, default=str)
    return text if len(text) <= SHOWN_VALUE else text[:SHOWN_VALUE] + "…"


def content_type(scope: dict) -> tuple[str, str]:
    """The request's media type (lower case, no parameters) and declared content-length."""
    kind = length = ""
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = value.decode("latin-1").split(";")[0].strip().lower()
        elif name == b"content-length":
            length = value.decode("latin-1")
    return kind, length


async def read_json_body(scope: dict, receive: Callable[..., Any], limit: int) -> bytes:
    """The body of a JSON request, refused as not JSON (415) or too large (413) — by its
    declared length before reading, and while reading when it declared none."""
    kind, length = content_type(scope)
    if kind != "application/json":
        raise UnsupportedMediaType(
            "request bodies must be JSON (content-type: application/json), got "
            f"{kind or 'no content-type'}"
        )
    if length.isdigit() and int(length) > limit:
        raise TooLarge(
            f"request body of {length} bytes is over the limit of {limit} "
            "(NB2PROD_MAX_BODY_BYTES); send fewer records"
        )
    return await read_body(receive, limit)


async def read_body(receive: Callable[..., Any], limit: int) -> bytes:
    """The whole request body, refused (``TooLarge``) as soon as it passes ``limit``;
    ``ClientGone`` when the client disconnects first."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise TooLarge(
                f"request body is over the limit of {limit} bytes (NB2PROD_MAX_BODY_BYTES); "
                "send less"
            )
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before its request had arrived: nothing to answer."""


@dataclass(frozen=True)
class DirectRoute:
    """A route ``Direct`` answers: the body is validated by ``adapter``; a small one is
    answered by the coroutine ``inline`` on the event loop, a large one by ``threaded``
    in a worker thread. Both return the answer's JSON bytes or raise ``ServiceError``.

    ``fast``, if set, is tried first on a large body: a cheaper decoder that gives the
    body ``adapter`` would give (``rows.FloatBodies``), or None when it cannot vouch for
    it; then ``adapter`` decides, refusals included."""

    adapter: TypeAdapter
    inline: Callable[[Any], Awaitable[bytes]]
    threaded: Callable[[Any], bytes]
    fast: Callable[[bytes], Any] | None = None


class Direct:
    """ASGI app answering ``POST`` to the paths in ``handlers`` (``DirectRoute``) itself,
    and any path with a control character (a JSON 404); every other request goes on to
    ``app``, BentoML's. ``front`` wraps what ``Direct`` answers in what must run for
    it too (``front.front``: BentoML's metrics, access log, ...); without it, ``Direct``
    answers bare (tests, or as a middleware inside BentoML's stack)."""

    def __init__(
        self,
        app: Any,
        handlers: dict[str, DirectRoute],
        max_body: int,
        front: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    ):
        self.app, self.handlers, self.max_body = app, handlers, max_body
        self.answer = self._answer if front is None else front(self._answer)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (
            (scope["method"] == "POST" and self._route(scope["path"]))
            or _CONTROL.search(scope["path"])
        ):
            await self.answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _route(self, path: str) -> DirectRoute | None:
        return self.handlers.get(path) or self.handlers.get(path.rstrip("/"))

    async def _answer(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        if _CONTROL.search(path):  # BentoML's router matches no such path, and would
            # answer a plain-text 404; every refusal is JSON (and documented)
            refused = NotFound(f"no route {safe(path)}: a path has no control characters")
            return await error_response(refused)(scope, receive, send)
        route = self._route(path)
        assert route is not None  # __call__ sends only its routes here
        try:
            raw = await read_json_body(scope, receive, self.max_body)
            if len(raw) <= INLINE_BYTES:
                body = await route.inline(decode(route.adapter, raw))
            else:  # decoding a big body takes milliseconds too: all of it off the loop
                body = await anyio.to_thread.run_sync(
                    functools.partial(_decoded_then, route, raw), limiter=_big()
                )
        except ClientGone:
            return
        except ServiceError as exc:
            if isinstance(exc, BadRequest) and exc.summary:
                log.info("refused a request to %s: %s", safe(path), safe(exc.summary))
            return await error_response(exc)(scope, receive, send)
        except Exception:  # a bug: logged with its traceback, answered 500 at once
            log.exception("POST %s failed", safe(path))
            return await error_response(ServiceError("internal error; see the server log"))(
                scope, receive, send
            )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _decoded_then(route: DirectRoute, raw: bytes) -> bytes:
    body = route.fast(raw) if route.fast is not None else None
    return route.threaded(decode(route.adapter, raw) if body is None else body)


@functools.lru_cache(maxsize=1)
def _big() -> anyio.CapacityLimiter:
    """One large request at a time per worker: more would only share the same core and
    the GIL, and hold up the small requests on the event loop longer."""
    return anyio.CapacityLimiter(1)


def encode(answer: Any) -> bytes:
    """An answer as JSON bytes (a NaN in a report becomes null)."""
    return orjson.dumps(answer)
