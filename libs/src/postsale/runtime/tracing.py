"""W3C trace context carried across HTTP and Kafka, recorded as OpenTelemetry spans, so one
purchase can be followed through every service's logs and in a tracing backend.

An HTTP request continues the `traceparent` header it brings (or starts a trace); a consumed
event continues its `ce_traceparent` header (the CloudEvents distributed-tracing extension
in Kafka binary mode). Every event published meanwhile carries the same trace id with a span
id of its own, and every log line names the trace id.

The spans: each HTTP request (server), each database transaction inside traced work, each
event queued in the outbox (`<topic> create`, producer; its id is the one `ce_traceparent`
carries), each record the outbox relay sends (`<topic> send`, producer, a child of the
event's create span) and each record a consumer handles (`<topic> process`, consumer, also a
child of it). When `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is
set, they are exported there over OTLP/HTTP (protobuf), batched; otherwise requests and consumed
records get trace and span ids (in logs and events, as always) but no recorded span, which
nothing would read and which costs a request more than its ids. The standard `OTEL_*` variables of the
SDK apply (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event as orm_events
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
)
"""The OpenTelemetry SDK's standard variables a deployment may set (the SDK reads them itself)."""

HEADER = "traceparent"
EVENT_HEADER = "ce_traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_propagator = TraceContextTextMapPropagator()
Attributes = Mapping[str, str | bool | int | float]


def _resource(service: str) -> Resource:
    attributes: dict[str, str] = {"service.namespace": "postsale"}
    # The standard variables win over the name Postsale gives.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes[SERVICE_NAME] = f"postsale-{service}" if service else "postsale"
    return Resource.create(attributes)


_lock = threading.Lock()
_provider = TracerProvider(resource=_resource(""))
_tracer = _provider.get_tracer("postsale.runtime")
_configured: tuple[str, str | None] | None = None
_exporting = False  # whether spans go anywhere (an OTLP endpoint is set)


def otlp_endpoint() -> str | None:
    """Where spans are exported, if anywhere (the OTLP/HTTP exporter reads the same variables)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def configure_tracing(service: str) -> None:
    """Names the process's spans after `service` and exports them over OTLP when an endpoint is
    set. Called when a service app is made; calling it again with the same service and endpoint
    changes nothing, otherwise the spans go to a new provider (the old one is flushed)."""
    global _provider, _tracer, _configured, _exporting
    endpoint = otlp_endpoint()
    with _lock:
        if _configured == (service, endpoint):
            return
        provider = TracerProvider(resource=_resource(service))
        if endpoint:
            protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
            if protocol != "http/protobuf":
                log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting with http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        old, _provider, _tracer, _configured = _provider, provider, provider.get_tracer("postsale.runtime"), (
            service, endpoint)
        _exporting = bool(endpoint)
    old.shutdown()
    if endpoint:
        log.info("exporting spans over OTLP to %s", endpoint)


def flush(timeout_millis: int = 5000) -> bool:
    """Exports the spans ended so far (at shutdown, and in tests)."""
    return _provider.force_flush(timeout_millis)


# -- trace context -------------------------------------------------------------------------------


def trace_id_of(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1)


def _context_of(traceparent: str | None) -> Context:
    """The context `traceparent` names, or an empty one (so: a new trace) when it names none."""
    if trace_id_of(traceparent) is None:
        return Context()
    return _propagator.extract({HEADER: traceparent}, context=Context())


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    if not context.is_valid:  # the SDK disabled: a traceparent of our own, as before spans existed
        return f"00-{current_trace_id() or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def current_span_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.span_id:016x}" if context.is_valid else None


def open_span(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
              attributes: Attributes | None = None, record: bool = True) -> Span:
    """A span continuing `traceparent` (a new trace when it has none) that the caller makes current
    (`trace.use_span`) and ends. `record=False`: a trace id for the work (logs, answers) but no span
    exported, for health probes; so too when spans are not exported at all, and when the SDK is
    disabled (`OTEL_SDK_DISABLED`)."""
    if not record or not _exporting or isinstance(_tracer, trace.NoOpTracer):
        parent = trace.get_current_span(_context_of(traceparent)).get_span_context()
        return NonRecordingSpan(SpanContext(
            trace_id=parent.trace_id if parent.is_valid else int(secrets.token_hex(16), 16),
            span_id=int(secrets.token_hex(8), 16), is_remote=False,
            # The caller's sampling decision goes on to the work this causes.
            trace_flags=parent.trace_flags if parent.is_valid else TraceFlags(TraceFlags.SAMPLED)))
    return _tracer.start_span(name, context=_context_of(traceparent), kind=kind, attributes=dict(attributes or {}))


@contextmanager
def start(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
          attributes: Attributes | None = None, record: bool = True) -> Iterator[Span]:
    """Runs the block in a new current span (see `open_span`), ended with the block."""
    with trace.use_span(open_span(name, traceparent=traceparent, kind=kind, attributes=attributes, record=record),
                        end_on_exit=True) as span:
        yield span


@contextmanager
def continue_trace(traceparent: str | None, name: str = "work", *, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: Attributes | None = None) -> Iterator[str]:
    """Runs the block in the trace of `traceparent`, or in a new trace when it has none; yields
    the trace id."""
    with start(name, traceparent=traceparent, kind=kind, attributes=attributes) as span:
        yield f"{span.get_span_context().trace_id:032x}"


@contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None) -> Iterator[Span]:
    """A span inside the current one (a new trace when there is none)."""
    with _tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {})) as current:
        yield current


def start_span(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Attributes | None = None) -> Span:
    """A span the caller ends, a child of `traceparent` (or of the current span when None)."""
    context = _context_of(traceparent) if traceparent is not None else None
    return _tracer.start_span(name, context=context, kind=kind, attributes=dict(attributes or {}))


def end_span(span: Span, error: BaseException | None = None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
    span.end()


def child_traceparent(name: str = "event create", attributes: Attributes | None = None) -> str:
    """A `traceparent` for something this work causes (an event): the current trace (or a new
    one), and the id of a producer span of its own, `name`, which the work it causes continues."""
    created = _tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=dict(attributes or {}))
    created.end()
    return traceparent_of(created)


# -- database transactions -----------------------------------------------------------------------

_DB_SPAN = "postsale_db_span"


@orm_events.listens_for(Session, "after_begin")
def _transaction_begun(session: Session, _transaction, connection) -> None:
    # Only inside traced work (a request, a consumed event): the pollers' idle look every
    # half second would otherwise each be a trace of its own.
    if _DB_SPAN in session.info or not trace.get_current_span().is_recording():
        return
    session.info[_DB_SPAN] = _tracer.start_span("db transaction", kind=SpanKind.CLIENT, attributes={
        "db.system.name": connection.dialect.name})


@orm_events.listens_for(Session, "after_commit")
def _transaction_committed(session: Session) -> None:
    current = session.info.get(_DB_SPAN)
    if current is not None:
        current.set_attribute("db.transaction.outcome", "commit")


@orm_events.listens_for(Session, "after_rollback")
def _transaction_rolled_back(session: Session) -> None:
    current = session.info.get(_DB_SPAN)
    if current is not None:
        current.set_attribute("db.transaction.outcome", "rollback")


@orm_events.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction) -> None:
    if transaction.parent is not None:  # a savepoint or subtransaction: the outer one goes on
        return
    current = session.info.pop(_DB_SPAN, None)
    if current is not None:
        current.end()
