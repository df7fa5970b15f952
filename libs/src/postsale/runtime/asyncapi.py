"""A service's AsyncAPI 3.0 document, from the code: the topics it owns (every event on them
is something it sends) and its subscriptions (the events it receives), with each event's
JSON Schema and the CloudEvents headers."""

from __future__ import annotations

from typing import Sequence

from postsale.contracts import topics
from postsale.contracts.envelope import EVENT_TYPES
from postsale.runtime.messaging import Subscription
from postsale.runtime.messaging.deadletters import dead_letter_topic

CLOUDEVENT_HEADERS = {
    "type": "object",
    "required": ["ce_id", "ce_type", "ce_source", "ce_specversion"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "Unique id of the event; a redelivery has the same id."},
        "ce_type": {"type": "string", "description": "The event type."},
        "ce_source": {"type": "string", "description": "The publishing service, e.g. /postsale/checkout."},
        "ce_subject": {"type": "string", "description": "The entity the event is about."},
        "ce_time": {"type": "string", "format": "date-time"},
        "content-type": {"type": "string", "const": "application/json"},
        "ce_traceparent": {"type": "string", "description": "W3C trace context of the work that caused the event."},
    },
}


def _message_name(event_type: str) -> str:
    return EVENT_TYPES[event_type].__name__


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_").replace("-", "_")


def asyncapi_document(service: str, subscriptions: Sequence[Subscription], version: str) -> dict:
    sent = [t for t in topics.ALL if t.publisher == service]
    received = {s.topic: s for s in subscriptions}
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    messages: dict[str, dict] = {}

    def channel(topic: str, event_types: list[str], description: str) -> str:
        channel_id = _channel_id(topic)
        channels[channel_id] = {
            "address": topic,
            "description": description,
            "messages": {_message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"} for t in event_types},
        }
        for event_type in event_types:
            event = EVENT_TYPES[event_type]
            messages[event.__name__] = {
                "name": event_type,
                "title": event.__name__,
                "summary": " ".join((event.__doc__ or "").split()),
                "contentType": "application/json",
                "headers": CLOUDEVENT_HEADERS,
                "payload": {"$ref": f"../../contracts/schemas/{event.topic}/{event_type}.json"},
                "bindings": {"kafka": {"key": {"type": "string", "description": topics.BY_NAME[event.topic].key}}},
            }
        return channel_id

    for topic in sent:
        event_types = [t for t, e in EVENT_TYPES.items() if e.topic == topic.name]
        channel_id = channel(topic.name, event_types, topic.description)
        operations[f"send_{channel_id}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Published through the outbox: at least once, in order per {topic.key}.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_message_name(t)}"} for t in event_types],
        }
    for topic, subscription in received.items():
        event_types = [e.event_type for e in subscription.handlers]
        if _channel_id(topic) not in channels:
            channel(topic, event_types, topics.BY_NAME[topic].description)
        channel_id = _channel_id(topic)
        operations[f"receive_{channel_id}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": subscription.description,
            "description": f"Consumer group `{subscription.group_id}`; idempotent on `ce_id`; a record that "
                           f"cannot be handled goes to `{subscription.dead_letter_topic}`.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_message_name(t)}"} for t in event_types],
        }
    if received:
        dead_letters = dead_letter_topic(service)
        channels[_channel_id(dead_letters)] = {
            "address": dead_letters,
            "description": "Records this service could not handle, unchanged, with `dlq_original_topic`, "
                           "`dlq_original_partition`, `dlq_original_offset`, `dlq_error_type`, `dlq_error` "
                           "and `dlq_attempts` headers added.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"Postsale {service}", "version": version,
                 "description": f"What the {service} service publishes and consumes on Kafka."},
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items()))},
    }
