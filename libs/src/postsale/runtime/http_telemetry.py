"""Every HTTP request of a service: a server span continuing its `traceparent`, its trace id in
the `X-Trace-Id` answer header and in the log lines written meanwhile, and the request metrics
(count and latency by route template and status)."""

from __future__ import annotations

import time

from fastapi import FastAPI
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postsale.runtime import tracing
from postsale.runtime.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Asked every few seconds by orchestrators and Prometheus: counted, given a trace id, but no span."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(scope: Scope) -> str:
    """The route template that answered (`/admin/offers/{offer_id}`), never the raw path, so
    that the metrics keep few series; `unmatched` when no route did (a 404)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class HttpTelemetry:
    """ASGI middleware; `install` puts it outside every other, so even answers made by other
    middleware (an error page, a refused form) are traced and counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled series of each (method, route, status), looked up once: `labels(...)` checks
        # and joins its labels under a lock on every call, a good part of this middleware's cost.
        # Few keys: methods and statuses are few, routes are the app's templates.
        self._series: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        path = scope.get("path", "")
        status = 500  # unless an answer starts
        probe = path in PROBES or path.startswith("/metrics/")
        with tracing.start(method, traceparent=Headers(scope=scope).get(tracing.HEADER), kind=SpanKind.SERVER,
                           record=not probe, attributes={
                               "http.request.method": method, "url.path": path,
                               "url.scheme": scope.get("scheme", "http")}) as span:
            trace_id = f"{span.get_span_context().trace_id:032x}".encode()

            async def send_with_trace_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), (b"x-trace-id", trace_id)]
                await send(message)

            try:
                await self.app(scope, receive, send_with_trace_id)
            finally:
                route = route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                series = self._series.get((method, route, status))
                if series is None:
                    labels = {"method": method, "route": route, "status": str(status)}
                    series = self._series[(method, route, status)] = (HTTP_REQUESTS.labels(**labels),
                                                                      HTTP_REQUEST_SECONDS.labels(**labels))
                series[0].inc()
                series[1].observe(time.perf_counter() - started)


def install(app: FastAPI) -> None:
    """Wraps the app's whole middleware stack (built at its first request) in `HttpTelemetry`;
    middleware added later, by the service, stays inside it."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: HttpTelemetry(build())  # type: ignore[method-assign]
