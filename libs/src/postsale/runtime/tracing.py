"""W3C trace context carried across HTTP and Kafka, so one purchase can be followed through
every service's logs.

An HTTP request continues the `traceparent` header it brings (or starts a trace); a consumed
event continues its `ce_traceparent` header (the CloudEvents distributed-tracing extension
in Kafka binary mode). Every event published meanwhile carries the same trace id with a span
id of its own, and every log line names the trace id.
"""

from __future__ import annotations

import re
import secrets
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

HEADER = "traceparent"
EVENT_HEADER = "ce_traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_trace_id: ContextVar[str | None] = ContextVar("postsale_trace_id", default=None)


def trace_id_of(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def current_trace_id() -> str | None:
    return _trace_id.get()


def child_traceparent() -> str:
    """A `traceparent` for something this work causes: the current trace, a new span."""
    return f"00-{_trace_id.get() or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@contextmanager
def continue_trace(traceparent: str | None) -> Iterator[str]:
    """Runs the block in the trace of `traceparent`, or in a new trace when it has none."""
    token = _trace_id.set(trace_id_of(traceparent) or secrets.token_hex(16))
    try:
        yield _trace_id.get()
    finally:
        _trace_id.reset(token)
