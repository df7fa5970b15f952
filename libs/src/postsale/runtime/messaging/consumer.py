"""Idempotent Kafka consumers with bounded retries and a dead-letter topic.

Each record is decoded with the contracts, handed to the use case registered for its event
type inside one database transaction together with its inbox row, and only then is the
offset committed. A redelivered record finds its inbox row and changes nothing.

Records are fetched in batches of what the broker already holds (never waiting to fill one),
and a batch's use cases run in one transaction with an inbox row each: one commit per batch
rather than per record. When any of them fails, nothing of the batch is kept and its records
are handled again one at a time, each in a transaction of its own, so a failing record is
retried and set aside alone while the others go through.

A group that acts on few of the events it reads (the webhooks', whose endpoints want only some
types, or none) gives its subscription a `wanted` check: one query before a batch's transaction,
and the events no use case here would act on are passed over without a transaction or an inbox row.

A record that cannot be decoded goes straight to the dead-letter topic (retrying cannot fix
it); one whose handler keeps failing goes there after bounded retries with backoff. Either
way the partition moves on. A failure while the database does not answer at all is an outage,
not the record's fault: the record waits for the database without using up its attempts.
Only when the dead letter itself cannot be written are the batch's offsets left uncommitted,
to be delivered again; a dead letter too large for the broker is written without its value
(which stays readable at its original offset) rather than stall.

`LagMonitor` measures each consumer group's lag per partition for the metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from itertools import chain
from typing import Awaitable, Callable, Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import bindparam, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from postsale.contracts import DecodeError, Event, UnknownEventType, decode
from postsale.contracts.envelope import cloudevent_attributes
from postsale.runtime import tracing
from postsale.runtime.clock import utcnow
from postsale.runtime.db import database_answers
from postsale.runtime.messaging.deadletters import VALUE_OMITTED_HEADER, dead_letter_headers, dead_letter_topic
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.messaging.outbox import is_unfixable
from postsale.runtime.metrics import CONSUMED, CONSUMER_LAG, DEAD_LETTERED
from postsale.runtime.settings import KafkaSettings, kafka_settings

log = logging.getLogger(__name__)

EventHandler = Callable[[Session, Event, str], None]
"""A use case: `(session, event, event id)`. Runs inside the consumer's transaction; it must not commit."""
WantedCheck = Callable[[Engine, list[Event]], list[bool]]
"""Which of a batch's events a use case would act on, read outside any transaction."""


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
    batch_size: int = 100  # records handled in one transaction, at most
    # None: every event is handed to its use case. Else the events for which it says False are
    # passed over, so a check must only say False of an event its use case would do nothing with.
    wanted: WantedCheck | None = None

    @property
    def group_id(self) -> str:
        return f"postsale-{self.service}"

    @property
    def consumer_name(self) -> str:
        return f"{self.service}:{self.topic}"

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.service)


@dataclass
class Delivery:
    """One record of a batch on its way to its use case, with its `process` span."""

    event: Event
    handler: EventHandler
    event_id: str
    span: Span
    record: object = None  # the ConsumerRecord, for its dead letter


# Built once and run with parameters: SQLAlchemy finds them compiled (see `db.built_once`).
_HANDLED = select(InboxMessage.event_id).where(InboxMessage.consumer == bindparam("consumer"),
                                               col(InboxMessage.event_id).in_(bindparam("ids", expanding=True)))
_INSERT_INBOX = insert(InboxMessage.__table__)


def apply_batch(engine: Engine, consumer: str, deliveries: list[Delivery]) -> list[bool]:
    """Runs each delivery's use case unless this consumer already did for its event id, all in one
    transaction; for each delivery, whether it ran.

    Safe to redeliver: each inbox row is inserted in the transaction of the effects, so both commit
    or neither does. One inbox query and one commit for the whole batch instead of one each. Raises
    (nothing of the batch committed) when any use case fails or a replica handled one of them
    meanwhile; the caller then handles the records one at a time, which isolates the failing one.
    """
    with Session(engine) as session:
        ids = [delivery.event_id for delivery in deliveries]
        handled = set(session.execute(_HANDLED, {"consumer": consumer, "ids": ids}).scalars())
        applied = []
        inbox_rows = []
        for delivery in deliveries:
            if delivery.event_id in handled:  # handled before, or twice in this batch
                applied.append(False)
                continue
            # The record's span is current for its use case, so what it publishes continues its trace.
            with trace.use_span(delivery.span, record_exception=False, set_status_on_exception=False):
                delivery.handler(session, delivery.event, delivery.event_id)
            inbox_rows.append({"consumer": consumer, "event_id": delivery.event_id,
                               "event_type": delivery.event.event_type, "received_at": utcnow()})
            handled.add(delivery.event_id)
            applied.append(True)
        if inbox_rows:  # one plain INSERT for the batch: as ORM objects, each row cost ten times the CPU
            session.execute(_INSERT_INBOX, inbox_rows)
        session.commit()
        return applied


def apply_once(engine: Engine, consumer: str, handler: EventHandler, event: Event, event_id: str) -> bool:
    """Run `handler` unless this consumer already did for `event_id`, in a transaction of its own
    (`apply_batch` of one). True when it ran."""
    try:
        return apply_batch(engine, consumer, [Delivery(event, handler, event_id, trace.get_current_span())])[0]
    except IntegrityError:
        # A replica handled the same event between our check and our commit.
        with Session(engine) as session:
            if session.get(InboxMessage, (consumer, event_id)) is not None:
                return False
        raise


def subscribe(broker: KafkaBroker, engine: Engine, subscriptions: Subscription | Sequence[Subscription],
              kafka: KafkaSettings | str | None = None) -> None:
    """Register `subscriptions` on `broker`: offsets are committed only after the transaction.

    One Kafka consumer for each consumer group, reading every topic its subscriptions name: one
    fetch, one heartbeat and one member of the group per replica, where a consumer per topic made
    a service of ten topics hold ten of each, and its group rebalance ten times as it started. A
    batch's records are handed to their topic's subscription, topic by topic, in the order fetched.

    Records come in batches of what the broker already has (up to each subscription's
    `batch_size`), handled in one transaction when all of them succeed, else one at a time. `kafka`
    (default: the environment's) names the topics, the groups and the dead-letter topics on the
    cluster: the subscriptions' own names with the installation's prefix."""
    kafka = kafka_settings(kafka)
    groups: dict[str, list[Subscription]] = {}
    for subscription in [subscriptions] if isinstance(subscriptions, Subscription) else subscriptions:
        groups.setdefault(subscription.group_id, []).append(subscription)
    for group in groups.values():
        _subscribe_group(broker, engine, group, kafka)


def _subscribe_group(broker: KafkaBroker, engine: Engine, group: list[Subscription], kafka: KafkaSettings) -> None:
    handlers = {}
    for subscription in group:
        topic = kafka.topic(subscription.topic)
        if topic in handlers:
            raise ValueError(f"two subscriptions of {subscription.group_id} read {subscription.topic}")
        handlers[topic] = (_records_handler(broker, engine, subscription, kafka), subscription.batch_size)

    # The batch's records arrive as the handler's body (see `_records`), not as faststream's
    # `KafkaMessage`: that parameter is filled from faststream's context, which its dependency
    # injection does in a worker thread, a hop per batch on the event loop's critical path.
    async def on_batch(records) -> None:
        by_topic: dict[str, list] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        for topic, mine in by_topic.items():
            handle, size = handlers[topic]
            for start in range(0, len(mine), size):
                await handle(mine[start:start + size])

    subscriber = broker.subscriber(
        *handlers,
        # Hand over the raw records: decoding is ours, so a malformed one is dead-lettered
        # instead of failing inside the framework and being redelivered for ever.
        decoder=_records,
        parser=_lenient_headers,
        group_id=kafka.group(group[0].group_id),
        auto_offset_reset="earliest",
        # Never the acknowledge-first default: the offsets are committed after on_batch returns,
        # and an exception (a dead letter could not be written) rewinds each partition to the
        # batch's first record there (the records handled meanwhile find their inbox rows).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=max(size for _, size in handlers.values()),
        batch_timeout_ms=_IDLE_POLL_MS,
        title=group[0].group_id,
    )
    # faststream makes the subscriber itself; its class swapped for a subclass with no state of its
    # own is the one way to change how it fetches.
    subscriber.__class__ = _PromptBatchSubscriber
    subscriber(on_batch)


def _records_handler(broker: KafkaBroker, engine: Engine, subscription: Subscription,
                     kafka: KafkaSettings) -> Callable[[list], Awaitable[None]]:
    """What `subscription` does with its topic's records of a batch."""
    group_id = kafka.group(subscription.group_id)
    dead_letter_topic = kafka.topic(subscription.dead_letter_topic)

    async def dead_letter(record, error: BaseException, attempts: int) -> None:
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

    async def handle_records(records: list) -> None:
        spans: list[Span] = []
        try:
            deliveries = []
            for record in records:
                # A child of the event's create span, whatever becomes of the record.
                span = tracing.open_span(f"{record.topic} process", traceparent=_header(record, tracing.EVENT_HEADER),
                                         kind=SpanKind.CONSUMER, attributes={
                    "messaging.system": "kafka", "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic, "messaging.consumer.group.name": group_id,
                    "messaging.destination.partition.id": str(record.partition), "messaging.kafka.offset": record.offset,
                    "messaging.message.id": _header(record, "ce_id") or ""})
                spans.append(span)
                delivery = await prepare(record, span)
                if delivery is not None:
                    deliveries.append(delivery)
            deliveries = await wanted_only(deliveries)
            if len(deliveries) > 1:
                try:
                    applied = await asyncio.to_thread(apply_batch, engine, subscription.consumer_name, deliveries)
                except Exception as exc:  # noqa: BLE001 - the records are handled one at a time below
                    log.info("%s: a batch of %s failed (%r); handling them one at a time",
                             subscription.consumer_name, len(deliveries), exc)
                else:
                    for delivery, ran in zip(deliveries, applied):
                        consumed(delivery, outcome_of(ran))
                    return
            for delivery in deliveries:
                await handle(delivery)
        finally:
            for span in spans:
                span.end()

    async def prepare(record, span: Span) -> Delivery | None:
        """The record's event and use case, or None when there is nothing to do (skipped, or dead-lettered)."""
        try:
            event = decode(record.headers or (), record.value)
        except UnknownEventType:
            span.set_attribute("postsale.outcome", "skipped: unknown event type")
            return None  # a newer publisher's event type that this consumer does not need
        except DecodeError as exc:
            span.set_attribute("postsale.outcome", "dead-lettered: not an event")
            with trace.use_span(span):
                await dead_letter(record, exc, attempts=0)
            return None
        span.set_attribute("cloudevents.event_type", event.event_type)
        handler = subscription.handlers.get(type(event))
        if handler is None:
            span.set_attribute("postsale.outcome", "skipped: not handled here")
            return None
        return Delivery(event, handler, cloudevent_attributes(record.headers or ())["ce_id"], span, record)

    async def wanted_only(deliveries: list[Delivery]) -> list[Delivery]:
        if subscription.wanted is None or not deliveries:
            return deliveries
        try:
            wanted = await asyncio.to_thread(subscription.wanted, engine, [d.event for d in deliveries])
        except Exception as exc:  # noqa: BLE001 - the use cases run as without a check, and wait for the database
            log.warning("%s: could not tell which events are wanted (%r)", subscription.consumer_name, exc)
            return deliveries
        for delivery, kept in zip(deliveries, wanted):
            if not kept:
                consumed(delivery, "skipped: not wanted here")
        return [delivery for delivery, kept in zip(deliveries, wanted) if kept]

    def consumed(delivery: Delivery, outcome: str) -> None:
        CONSUMED.labels(consumer=subscription.consumer_name, event_type=delivery.event.event_type).inc()
        delivery.span.set_attribute("postsale.outcome", outcome)

    def outcome_of(applied: bool) -> str:
        return "handled" if applied else "skipped: handled before"

    async def handle(delivery: Delivery) -> None:
        span = delivery.span
        attempt = waits = 0
        while True:
            try:
                with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                    applied = await asyncio.to_thread(apply_once, engine, subscription.consumer_name,
                                                      delivery.handler, delivery.event, delivery.event_id)
                consumed(delivery, outcome_of(applied))
                return
            except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
                if not await asyncio.to_thread(database_answers, engine):
                    # The database is down or restarting: nothing is wrong with the record, so it waits
                    # (holding its group's consumer, offsets uncommitted) rather than using up its attempts and
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
                    with trace.use_span(span):
                        await dead_letter(delivery.record, exc, attempts=attempt)
                    return
                log.warning("%s failed on attempt %s: %r", subscription.consumer_name, attempt, exc)
                await asyncio.sleep(subscription.retry.delay(attempt))

    return handle_records


_IDLE_POLL_MS = 1000
"""How long one fetch waits for a record when none is there; a record that comes meanwhile is
handed over at once, so this costs no latency (see `_PromptBatchSubscriber`)."""


class _PromptBatchSubscriber(BatchSubscriber):
    """faststream's batch subscriber without its pause after a fetch that found nothing.

    That pause (as long as the fetch's own wait) would hold back a record that comes during it
    for up to a second on a quiet topic; the fetch itself returns as soon as a record is there."""

    __slots__ = ()

    async def get_msg(self, consumer):
        records = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        return tuple(chain.from_iterable(records.values()))


def _header(record, name: str) -> str | None:
    for header, value in record.headers or ():
        if header == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


async def _records(msg: KafkaMessage) -> tuple:
    """The batch's records themselves, as the handler's body: decoding is ours."""
    return msg.raw_message


async def _lenient_headers(records, original_parser) -> KafkaMessage:
    """faststream reads every header as UTF-8 and fails on other bytes, before our handler and
    so for ever (the batch is redelivered); let it read copies with those bytes replaced, and
    hand our handler the records themselves."""
    try:
        return await original_parser(records)
    except UnicodeDecodeError:
        readable = tuple(dataclasses.replace(record, headers=[(name, value.decode(errors="replace").encode())
                                                              for name, value in record.headers])
                         for record in records)
        message = await original_parser(readable)
        message.raw_message = records
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
