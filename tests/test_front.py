"""``wire.Direct`` in front of BentoML's app (runtime/front.py): which of the app's layers
still wrap ``/predict``, in what order, and that they still do their work there."""

import asyncio
import logging

import pytest
from bentoml._internal.server.http.access import AccessLogMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from typing_extensions import TypedDict

from nb2prod.runtime import front, wire


class Counting:
    """Stands for BentoML's metrics middleware: set up lazily, once, on first use."""

    setups = 0

    def __init__(self, app):
        self.app, self._is_setup, self.seen = app, False, []

    def _setup(self):
        Counting.setups += 1
        self.seen = []  # shared with the copy in front of Direct once made here
        self._is_setup = True

    async def __call__(self, scope, receive, send):
        if not self._is_setup:
            self._setup()
        self.seen.append(scope["path"])
        await self.app(scope, receive, send)


class Body(TypedDict):
    records: list[dict]


async def inline(body):
    return wire.encode({"n": len(body["records"])})


def make(exporter=None):
    provider = TracerProvider()
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Starlette(
        routes=[Route("/other", lambda request: PlainTextResponse("bentoml"))],
        middleware=[
            Middleware(Counting),
            Middleware(OpenTelemetryMiddleware, tracer_provider=provider),
            Middleware(AccessLogMiddleware),
            Middleware(TimeoutMiddleware, timeout=30),
        ],
    )
    route = wire.DirectRoute(TypeAdapter(Body), inline, lambda body: b"")
    return front.in_front(app, wire.Direct, handlers={"/predict": route}, max_body=1000), app


def call(app, path, body=b'{"records": [{}, {}]}', method="POST"):
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 9), "server": ("127.0.0.1", 3000)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def kept(app, monkeypatch, tracing):
    monkeypatch.setattr(front, "tracing_exports", lambda: tracing)
    chain, names = front.front(app, lambda *a: None), []
    while hasattr(chain, "app"):
        names.append(type(chain).__name__)
        chain = chain.app
    return names


def test_direct_keeps_the_layers_that_work_for_it_in_their_order(monkeypatch):
    _, app = make()
    every = [type(layer).__name__ for layer in front.layers(app)]
    assert every[0] == "ServerErrorMiddleware" and "TimeoutMiddleware" in every
    assert kept(app, monkeypatch, tracing=False) == ["Counting", "AccessLogMiddleware"]
    assert kept(app, monkeypatch, tracing=True) == [
        "Counting", "OpenTelemetryMiddleware", "AccessLogMiddleware"]


def test_metrics_and_the_access_log_see_direct_routes_and_the_rest(monkeypatch, caplog):
    monkeypatch.setattr(front, "tracing_exports", lambda: False)
    Counting.setups = 0
    direct, app = make()
    with caplog.at_level(logging.INFO, logger="bentoml.access"):
        assert call(direct, "/predict") == (200, b'{"n":2}')
        assert call(direct, "/predict", body=b'{"rows": []}')[0] == 400
        assert call(direct, "/other", method="GET") == (200, b"bentoml")
    counting = front.layers(app)[1]
    assert Counting.setups == 1 and counting.seen == ["/predict", "/predict", "/other"]
    lines = [r.getMessage() for r in caplog.records if r.name == "bentoml.access"]
    assert len(lines) == 3 and "/predict" in lines[0] and "200" in lines[0]
    assert "400" in lines[1] and "/other" in lines[2]


@pytest.mark.parametrize("tracing", [True, False])
def test_a_span_for_predict_only_when_traces_are_exported(monkeypatch, tracing):
    monkeypatch.setattr(front, "tracing_exports", lambda: tracing)
    exporter = InMemorySpanExporter()
    direct, _ = make(exporter)
    assert call(direct, "/predict")[0] == 200
    spans = [s.name for s in exporter.get_finished_spans()]
    assert any("/predict" in name for name in spans) is tracing
    assert call(direct, "/other", method="GET")[0] == 200  # BentoML's stack: traced always
    assert any("/other" in s.name for s in exporter.get_finished_spans())


def test_a_path_with_a_control_character_is_a_json_404_in_front():
    direct, _ = make()
    status, body = call(direct, "/pre\ndict", method="GET")
    assert status == 404 and body.startswith(b"{")
