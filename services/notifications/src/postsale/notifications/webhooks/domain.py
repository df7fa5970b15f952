"""The rules of outgoing webhooks, without I/O: what an endpoint may subscribe to, what a payload
holds, when a failed delivery is tried again, and when an endpoint that keeps failing is disabled.
The clock is always an argument."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from postsale.contracts import ALL_EVENTS, Event, topics
from postsale.contracts.base import SECRET_MARK

# Waits after each failed attempt: ten attempts over 71.6 hours, about three days (the
# schedule Standard Webhooks senders use, stretched to three days).
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5),
    timedelta(hours=10), timedelta(hours=14), timedelta(hours=20), timedelta(hours=20),
)
EXCERPT_CHARS = 1000
ERROR_CHARS = 500

# Only public topics are forwarded: a restricted topic's events carry links and codes that sign a
# customer in, which must never leave Postsale.
FORWARDED_TOPICS: tuple[topics.Topic, ...] = tuple(t for t in topics.ALL if not t.restricted)
EVENT_TYPES: dict[str, type[Event]] = {
    e.event_type: e for e in ALL_EVENTS if not topics.BY_NAME[e.topic].restricted}


def unknown_event_types(event_types: list[str]) -> list[str]:
    """The names in `event_types` that no endpoint may subscribe to."""
    return [t for t in event_types if t not in EVENT_TYPES]


def message_id(endpoint_id: str, event_id: str) -> str:
    """The `webhook-id`: the same for an event and an endpoint however often it is sent, so the
    receiver deduplicates with it."""
    return "msg_" + hashlib.sha256(f"{endpoint_id}:{event_id}".encode()).hexdigest()[:32]


def payload(event: Event, received_at: datetime) -> str:
    """The JSON body (compact, signed as sent): `type`, `timestamp` (when Postsale received the
    event) and `data` (the event's fields, never one marked secret)."""
    secret = {name for name, field in type(event).model_fields.items()
              if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(SECRET_MARK)}
    data = event.model_dump(mode="json", exclude=secret)
    return json.dumps({"type": event.event_type, "timestamp": received_at.isoformat(), "data": data},
                      separators=(",", ":"))


def next_attempt_at(round_attempts: int, now: datetime) -> datetime | None:
    """When to try again after the `round_attempts`-th failed attempt; None: the schedule is over
    (the delivery is a dead letter)."""
    if round_attempts > len(RETRY_SCHEDULE):
        return None
    return now + RETRY_SCHEDULE[round_attempts - 1]


def should_disable(failing_since: datetime | None, now: datetime, disable_after: timedelta) -> bool:
    """An endpoint is disabled once every attempt failed for `disable_after`."""
    return failing_since is not None and now - failing_since >= disable_after


def excerpt(text: str | None, limit: int) -> str | None:
    """The first `limit` characters, trimmed, without NUL; None for nothing."""
    if not text:
        return None
    # A NUL is no character PostgreSQL keeps in text: the attempt would never be recorded.
    text = text[:limit * 4].replace("\x00", "").strip()
    return (text[:limit - 1] + "…" if len(text) > limit else text) or None
