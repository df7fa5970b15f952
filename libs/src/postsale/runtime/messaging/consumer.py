"""Idempotent Kafka consumers with bounded retries and a dead-letter topic.

Each record is decoded with the contracts, handed to the use case registered for its event
type inside one database transaction together with its inbox row, and only then is the
offset committed. A redelivered record finds its inbox row and changes nothing.

A record that cannot be decoded goes straight to the dead-letter topic (retrying cannot fix
it); one whose handler keeps failing goes there after bounded retries with backoff. Either
way the partition moves on. A failure while the database does not answer at all is an outage,
not the record's fault: the record waits for the database without using up its attempts. Only when the dead letter itself cannot be written does the
record stay uncommitted, to be delivered again; a dead letter too large for the broker is
written without its value (which stays readable at its original offset) rather than stall.

`LagMonitor` measures each consumer group's lag per partition for the metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.contracts import DecodeError, Event, UnknownEventType, decode
from postsale.contracts.envelope import cloudevent_attributes
from postsale.runtime import tracing
from postsale.runtime.db import database_answers
from postsale.runtime.messaging.deadletters import VALUE_OMITTED_HEADER, dead_letter_headers, dead_letter_topic
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.messaging.outbox import is_unfixable
from postsale.runtime.metrics import CONSUMED, CONSUMER_LAG, DEAD_LETTERED
from postsale.runtime.settings import KafkaSettings, kafka_settings

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


def subscribe(broker: KafkaBroker, engine: Engine, subscription: Subscription,
              kafka: KafkaSettings | str | None = None) -> None:
    """Register `subscription` on `broker`: offsets are committed only after the transaction.

    `kafka` (default: the environment's) names the topic, the group and the dead-letter topic on
    the cluster: the subscription's own names with the installation's prefix."""
    kafka = kafka_settings(kafka)
    topic, group_id = kafka.topic(subscription.topic), kafka.group(subscription.group_id)
    dead_letter_topic = kafka.topic(subscription.dead_letter_topic)

    async def dead_letter(msg: KafkaMessage, error: BaseException, attempts: int) -> None:
        record = msg.raw_message
        headers = dead_letter_headers(record, consumer=subscription.consumer_name, error=error, attempts=attempts)
        with tracing.span(f"{dead_letter_topic} send", kind=SpanKind.PRODUCER, attributes={
                "messaging.system": "kafka", "messaging.operation.type": "send",
                "messaging.destination.name": dead_letter_topic}):
            try:
                await broker.publish(record.value, topic=dead_letter_topic, key=record.key, headers=headers)
            except Exception as exc:
                if not is_unfixable(exc):
                    raise
                # Too large with the headers added: raising would redeliver the record for ever and
                # stall the partition. The value stays at its original offset, where replay reads it.
                log.error("dead letter of %s[%s]@%s refused (%r); writing it without its value",
                          record.topic, record.partition, record.offset, exc)
                headers[VALUE_OMITTED_HEADER] = str(len(record.value or b""))
                await broker.publish(None, topic=dead_letter_topic, key=record.key or b"", headers=headers)
        DEAD_LETTERED.labels(consumer=subscription.consumer_name).inc()
        log.error(
            "dead-lettered %s[%s]@%s after %s attempt(s): %s",
            record.topic, record.partition, record.offset, attempts, error,
        )

    async def on_record(msg: KafkaMessage) -> None:
        record = msg.raw_message
        # A child of the event's create span, whatever becomes of the record.
        traceparent = _header(record, tracing.EVENT_HEADER)
        with tracing.start(f"{record.topic} process", traceparent=traceparent, kind=SpanKind.CONSUMER, attributes={
                "messaging.system": "kafka", "messaging.operation.type": "process",
                "messaging.destination.name": record.topic, "messaging.consumer.group.name": group_id,
                "messaging.destination.partition.id": str(record.partition), "messaging.kafka.offset": record.offset,
                "messaging.message.id": _header(record, "ce_id") or ""}) as span:
            try:
                event = decode(record.headers or (), record.value)
            except UnknownEventType:
                span.set_attribute("postsale.outcome", "skipped: unknown event type")
                return  # a newer publisher's event type that this consumer does not need
            except DecodeError as exc:
                span.set_attribute("postsale.outcome", "dead-lettered: not an event")
                await dead_letter(msg, exc, attempts=0)
                return
            span.set_attribute("cloudevents.event_type", event.event_type)
            handler = subscription.handlers.get(type(event))
            if handler is None:
                span.set_attribute("postsale.outcome", "skipped: not handled here")
                return
            attributes = cloudevent_attributes(record.headers or ())
            await handle(msg, event, handler, attributes["ce_id"])

    async def handle(msg: KafkaMessage, event: Event, handler: EventHandler, event_id: str) -> None:
        span = trace.get_current_span()
        attempt = waits = 0
        while True:
            try:
                applied = await asyncio.to_thread(apply_once, engine, subscription.consumer_name, handler, event,
                                                  event_id)
                CONSUMED.labels(consumer=subscription.consumer_name, event_type=event.event_type).inc()
                span.set_attribute("postsale.outcome", "handled" if applied else "skipped: handled before")
                return
            except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
                if not await asyncio.to_thread(database_answers, engine):
                    # The database is down or restarting: nothing is wrong with the record, so it waits
                    # (holding its partition, offset uncommitted) rather than using up its attempts and
                    # landing in the dead letters with the grant or email it carries.
                    waits += 1
                    log.warning("%s waits for its database (%r)", subscription.consumer_name, exc)
                    await asyncio.sleep(subscription.retry.delay(waits))
                    continue
                attempt += 1
                span.record_exception(exc, attributes={"postsale.attempt": attempt})
                if attempt >= subscription.retry.attempts:
                    span.set_status(Status(StatusCode.ERROR, f"dead-lettered after {attempt} attempts: {exc!r}"[:500]))
                    span.set_attribute("postsale.outcome", "dead-lettered")
                    await dead_letter(msg, exc, attempts=attempt)
                    return
                log.warning("%s failed on attempt %s: %r", subscription.consumer_name, attempt, exc)
                await asyncio.sleep(subscription.retry.delay(attempt))

    broker.subscriber(
        topic,
        # Hand over the raw record: decoding is ours, so a malformed one is dead-lettered
        # instead of failing inside the framework and being redelivered for ever.
        decoder=_undecoded,
        parser=_lenient_headers,
        group_id=group_id,
        auto_offset_reset="earliest",
        # Never the acknowledge-first default: the offset is committed after on_record
        # returns, and an exception (the dead letter could not be written) rewinds it.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        description=subscription.description or None,
        title=f"{subscription.consumer_name}",
    )(on_record)


def _header(record, name: str) -> str | None:
    for header, value in record.headers or ():
        if header == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


async def _undecoded(msg: KafkaMessage) -> bytes:
    return msg.body


async def _lenient_headers(record, original_parser) -> KafkaMessage:
    """faststream reads every header as UTF-8 and fails on other bytes, before our handler and
    so for ever (the record is redelivered); let it read a copy with those bytes replaced, and
    hand our handler the record itself."""
    try:
        return await original_parser(record)
    except UnicodeDecodeError:
        readable = dataclasses.replace(record, headers=[(name, value.decode(errors="replace").encode())
                                                        for name, value in record.headers])
        message = await original_parser(readable)
        message.raw_message = record
        return message


class LagMonitor:
    """Each consumer group's lag per partition: the partition's end offset minus the group's
    committed offset (what `kafka-consumer-groups --describe` shows), set on the gauge.

    Two requests per look, on clients of its own, so the service's consumers are not touched.
    A partition the group never committed on is not reported.
    """

    def __init__(self, kafka: KafkaSettings | str | None, group_ids: Iterable[str]) -> None:
        """`group_ids`: the groups as named on the cluster (prefixed)."""
        self.kafka = kafka_settings(kafka)
        self.group_ids = sorted(set(group_ids))
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def observe(self) -> dict[tuple[str, TopicPartition], int]:
        if self._admin is None or self._offsets is None:
            await self.close()
            self._admin = AIOKafkaAdminClient(**self.kafka.client_kwargs())
            self._offsets = AIOKafkaConsumer(**self.kafka.client_kwargs(), group_id=None)
            await self._admin.start()
            await self._offsets.start()
        lags: dict[tuple[str, TopicPartition], int] = {}
        for group in self.group_ids:
            committed = {tp: meta.offset for tp, meta in (await self._admin.list_consumer_group_offsets(group)).items()
                         if meta.offset >= 0}
            if not committed:
                continue
            ends = await self._offsets.end_offsets(list(committed))
            for tp, offset in committed.items():
                lags[(group, tp)] = max(ends[tp] - offset, 0)
                CONSUMER_LAG.labels(group=group, topic=tp.topic, partition=str(tp.partition)).set(lags[(group, tp)])
        return lags

    async def close(self) -> None:
        admin, offsets, self._admin, self._offsets = self._admin, self._offsets, None, None
        if admin is not None:
            await admin.close()
        if offsets is not None:
            await offsets.stop()
