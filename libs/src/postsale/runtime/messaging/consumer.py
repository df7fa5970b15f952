"""Idempotent Kafka consumers with bounded retries and a dead-letter topic.

Each record is decoded with the contracts, handed to the use case registered for its event
type inside one database transaction together with its inbox row, and only then is the
offset committed. A redelivered record finds its inbox row and changes nothing.

A record that cannot be decoded goes straight to the dead-letter topic (retrying cannot fix
it); one whose handler keeps failing goes there after bounded retries with backoff. Either
way the partition moves on. Only when the dead letter itself cannot be written does the
record stay uncommitted, to be delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.contracts import DecodeError, Event, UnknownEventType, decode
from postsale.contracts.envelope import cloudevent_attributes
from postsale.runtime import tracing
from postsale.runtime.messaging.deadletters import dead_letter_headers, dead_letter_topic
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.metrics import CONSUMED, DEAD_LETTERED

log = logging.getLogger(__name__)

EventHandler = Callable[[Session, Event, str], None]
"""A use case: `(session, event, event id)`. Runs inside the consumer's transaction; it must not commit."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay)


@dataclass
class Subscription:
    """One consumer group's subscription to a topic: event type -> use case."""

    service: str
    topic: str
    handlers: Mapping[type[Event], EventHandler]
    description: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def group_id(self) -> str:
        return f"postsale-{self.service}"

    @property
    def consumer_name(self) -> str:
        return f"{self.service}:{self.topic}"

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.service)


def apply_once(engine: Engine, consumer: str, handler: EventHandler, event: Event, event_id: str) -> bool:
    """Run `handler` unless this consumer already did for `event_id`. True when it ran.

    Safe to redeliver: the inbox row is inserted in the handler's transaction, so the effect
    and the record that it happened commit together or not at all.
    """
    with Session(engine) as session:
        if session.get(InboxMessage, (consumer, event_id)) is not None:
            return False
        handler(session, event, event_id)
        session.add(InboxMessage(consumer=consumer, event_id=event_id, event_type=event.event_type))
        try:
            session.commit()
        except IntegrityError:
            # A replica handled the same event between our check and our commit.
            session.rollback()
            if session.get(InboxMessage, (consumer, event_id)) is not None:
                return False
            raise
        return True


def subscribe(broker: KafkaBroker, engine: Engine, subscription: Subscription) -> None:
    """Register `subscription` on `broker`: offsets are committed only after the transaction."""

    async def dead_letter(msg: KafkaMessage, error: BaseException, attempts: int) -> None:
        record = msg.raw_message
        await broker.publish(
            record.value or b"", topic=subscription.dead_letter_topic, key=record.key,
            headers=dead_letter_headers(record, consumer=subscription.consumer_name, error=error, attempts=attempts),
        )
        DEAD_LETTERED.labels(consumer=subscription.consumer_name).inc()
        log.error(
            "dead-lettered %s[%s]@%s after %s attempt(s): %s",
            record.topic, record.partition, record.offset, attempts, error,
        )

    async def on_record(msg: KafkaMessage) -> None:
        record = msg.raw_message
        try:
            event = decode(record.headers or (), record.value)
        except UnknownEventType:
            return  # a newer publisher's event type that this consumer does not need
        except DecodeError as exc:
            await dead_letter(msg, exc, attempts=0)
            return
        handler = subscription.handlers.get(type(event))
        if handler is None:
            return
        attributes = cloudevent_attributes(record.headers or ())
        with tracing.continue_trace(attributes.get(tracing.EVENT_HEADER)):
            await handle(msg, event, handler, attributes["ce_id"])

    async def handle(msg: KafkaMessage, event: Event, handler: EventHandler, event_id: str) -> None:
        for attempt in range(1, subscription.retry.attempts + 1):
            try:
                await asyncio.to_thread(apply_once, engine, subscription.consumer_name, handler, event, event_id)
                CONSUMED.labels(consumer=subscription.consumer_name, event_type=event.event_type).inc()
                return
            except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
                if attempt == subscription.retry.attempts:
                    await dead_letter(msg, exc, attempts=attempt)
                    return
                log.warning("%s failed on attempt %s: %r", subscription.consumer_name, attempt, exc)
                await asyncio.sleep(subscription.retry.delay(attempt))

    broker.subscriber(
        subscription.topic,
        # Hand over the raw record: decoding is ours, so a malformed one is dead-lettered
        # instead of failing inside the framework and being redelivered for ever.
        decoder=_undecoded,
        group_id=subscription.group_id,
        auto_offset_reset="earliest",
        # Never the acknowledge-first default: the offset is committed after on_record
        # returns, and an exception (the dead letter could not be written) rewinds it.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        description=subscription.description or None,
        title=f"{subscription.consumer_name}",
    )(on_record)


async def _undecoded(msg: KafkaMessage) -> bytes:
    return msg.body
