"""CloudEvents in Kafka binary mode: attributes in record headers, the JSON payload in the value.

Headers: `ce_id`, `ce_source`, `ce_type`, `ce_time`, `ce_subject`, `ce_specversion` and
`content-type`. Header values are UTF-8 bytes on the wire; `decode` also accepts `str`
values, as some clients hand them over decoded.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Iterable, Mapping

from pydantic import ValidationError

from postsale.contracts.base import Event
from postsale.contracts.events import ALL_EVENTS

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

EVENT_TYPES: dict[str, type[Event]] = {cls.event_type: cls for cls in ALL_EVENTS}

HeaderValue = bytes | str
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]


class DecodeError(ValueError):
    """The record is not a Postsale event: missing CloudEvents headers or an invalid payload."""


class UnknownEventType(DecodeError):
    """A well-formed CloudEvent of a type this version of the contracts does not know.

    A reader should usually skip it: a newer publisher may add event types to a topic.
    """

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


def encode(event: Event, *, source: str, event_id: str | None = None,
           time: datetime | None = None) -> tuple[dict[str, bytes], bytes]:
    """Headers and value of the Kafka record carrying `event`."""
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event_id or str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": event.event_type,
        "ce_time": (time or datetime.now(timezone.utc)).isoformat(),
        "ce_subject": event.subject(),
        "content-type": CONTENT_TYPE,
    }
    return {k: v.encode() for k, v in headers.items()}, event.model_dump_json().encode()


def cloudevent_attributes(headers: Headers) -> dict[str, str]:
    """The `ce_*` and `content-type` headers as text."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    attributes: dict[str, str] = {}
    for name, value in pairs:
        if name.startswith("ce_") or name == "content-type":
            try:
                attributes[name] = value.decode() if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError as exc:
                raise DecodeError(f"header {name} is not UTF-8") from exc
    return attributes


def decode(headers: Headers, value: bytes | str | None) -> Event:
    """The typed event in a Kafka record, or DecodeError saying why the record is not one."""
    attributes = cloudevent_attributes(headers)
    missing = [h for h in ("ce_id", "ce_type", "ce_source", "ce_specversion") if not attributes.get(h)]
    if missing:
        raise DecodeError(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
    if attributes["ce_specversion"] != SPEC_VERSION:
        raise DecodeError(f"unsupported CloudEvents specversion {attributes['ce_specversion']!r}")
    content_type = attributes.get("content-type", CONTENT_TYPE)
    if not content_type.startswith(CONTENT_TYPE):
        raise DecodeError(f"unsupported content-type {content_type!r}")
    model = EVENT_TYPES.get(attributes["ce_type"])
    if model is None:
        raise UnknownEventType(attributes["ce_type"])
    if value is None:
        raise DecodeError(f"{attributes['ce_type']} {attributes['ce_id']} has no payload")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        raise DecodeError(f"invalid {attributes['ce_type']} payload: {exc}") from exc


def event_id(headers: Headers) -> str:
    """The CloudEvents id of a record (the inbox key)."""
    return cloudevent_attributes(headers)["ce_id"]
