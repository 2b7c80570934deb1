"""``wire.Direct`` in front of BentoML's ASGI app: ``in_front``.

Inside BentoML's middleware stack, every ``/predict`` went through ten layers before
``Direct`` answered it: Starlette's error and exception handlers, BentoML's metrics,
OpenTelemetry's span, the access log, BentoML's timeout (a task and a timer per
request), the service context. Served, that was 1.6 ms of an 8.4 ms request on this
2-core machine (bench/results/peers.md). In front, ``Direct`` runs for its own routes
only the layers that do something there, the very instances BentoML made (copied,
with their metrics shared), in BentoML's order:

- kept: BentoML's request metrics (``/metrics`` counts ``/predict`` as before), the
  access log when enabled, BentoML's concurrency limit and CORS when configured, any
  middleware this module does not know;
- kept when ``tracing.exporter_type`` is set: OpenTelemetry's span (without an exporter
  it only makes spans nobody sees);
- dropped: Starlette's error handlers (``Direct`` answers every error itself, JSON),
  BentoML's timeout (the model's deadline, ``NB2PROD_TIMEOUT_S``, bounds a prediction),
  the service context (nb2prod's handlers do not use ``bentoml.Context``).

Every other request goes through BentoML's whole stack, unchanged.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

log = logging.getLogger("nb2prod")
# by class name: BentoML's and Starlette's, which need not be importable to be known
DROPPED = frozenset(
    {"ServerErrorMiddleware", "ExceptionMiddleware", "TimeoutMiddleware", "ContextMiddleware"}
)
TRACING = "OpenTelemetryMiddleware"


def layers(app: Any) -> list[Any]:
    """The middleware instances of the Starlette ``app``, outermost first (built now,
    once, so that the app and ``Direct`` share them)."""
    if getattr(app, "middleware_stack", None) is None:
        app.middleware_stack = app.build_middleware_stack()
    found, node = [], app.middleware_stack
    while node is not app.router and hasattr(node, "app"):
        found.append(node)
        node = node.app
    return found


def tracing_exports() -> bool:
    """Whether BentoML is configured to export traces (``tracing.exporter_type``)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return bool(BentoMLContainer.tracing.exporter_type.get())


def front(app: Any, answer: Callable[..., Any]) -> Callable[..., Any]:
    """``answer`` (an ASGI callable) wrapped in the layers of ``app`` that matter to it."""
    tracing = tracing_exports()
    chain = answer
    for layer in reversed(layers(app)):
        name = type(layer).__name__
        if name in DROPPED or (name == TRACING and not tracing):
            continue
        if getattr(layer, "_is_setup", True) is False:
            layer._setup()  # BentoML's metrics: made once, then shared by the copy
        kept = copy.copy(layer)
        kept.app = chain
        chain = kept
    return chain


def in_front(app: Any, direct: type, **options: Any) -> Any:
    """``direct(app, front=..., **options)``: the ASGI app ``bentoml serve`` runs."""
    return direct(app, front=lambda answer: front(app, answer), **options)
