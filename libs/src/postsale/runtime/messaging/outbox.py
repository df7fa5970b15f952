"""The transactional outbox and the relay that publishes it.

A service never publishes from inside a request or a handler: it adds an outbox row in the
same database transaction as its change (`publish_later`), and the relay publishes the rows
with an idempotent producer (acks from all in-sync replicas) and marks them sent. A row whose
publish fails for a passing reason (broker down, leader moving) stays unsent and is retried
until it goes out, in order. A row the broker refuses for good (too large, invalid topic, not
authorised) is parked: kept with its error, skipped so later rows go out, and re-queued by an
operator once the cause is fixed (`python -m postsale.runtime.messaging.deadletters`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Index, LargeBinary, bindparam, func, insert, text, update
from sqlalchemy.engine import Engine, Row
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import Event, encode
from postsale.runtime import tracing, wakeups
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.metrics import (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PARKED, OUTBOX_PARKED_TOTAL,
                                      OUTBOX_PUBLISHED)
from postsale.runtime.settings import KafkaSettings, kafka_settings

log = logging.getLogger(__name__)
RELAY = "outbox-relay"

MAX_EVENT_BYTES = 256 * 1024
"""The largest record (value, header names and values, and key) `publish_later` queues.

Well under Kafka's default `max.message.bytes` (1 MB) and the producer's `max.request.size`,
so that every queued event can go out, with room for the headers a dead letter adds."""

_PENDING = "sent_at IS NULL AND parked_at IS NULL"


class EventTooLarge(ValueError):
    """The event's record would exceed `MAX_EVENT_BYTES`; nothing was queued.

    In a consumer it is retried, then dead-lettered like any failure; a request handler
    should answer it with a 4xx (the input that made the event too large)."""

    def __init__(self, event_type: str, size: int, limit: int = MAX_EVENT_BYTES) -> None:
        super().__init__(f"{event_type} event is {size} bytes encoded, over the {limit}-byte limit")
        self.event_type = event_type
        self.size = size
        self.limit = limit


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        # Partial indexes: the relay's claim and the readiness check read only pending rows,
        # and the parked-rows gauge only parked ones, however many sent rows accumulate.
        Index("ix_outbox_pending", "id", sqlite_where=text(_PENDING), postgresql_where=text(_PENDING)),
        Index("ix_outbox_parked", "parked_at", sqlite_where=text("parked_at IS NOT NULL"),
              postgresql_where=text("parked_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    topic: str
    key: str
    headers: str  # JSON object of the record's headers
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    last_error: str | None = None
    # Set when the broker refused the row for a reason retrying cannot fix; the relay skips it.
    parked_at: datetime | None = None


OUTBOX = OutboxMessage.__table__  # the relay's and `publish_later`'s statements are plain SQL: see `_publish_batch`


def record_size(key: str, headers: dict[str, str], value: bytes) -> int:
    """Bytes of the record's key, header names and values, and value, as a broker counts them
    (give or take a few bytes of framing per field)."""
    return len(key.encode()) + len(value) + sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())


# Built once and run with parameters: SQLAlchemy finds them compiled (see `db.built_once`).
_INSERT_OUTBOX = insert(OUTBOX)
_MARK_SENT = (update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
              .values(sent_at=bindparam("now"), attempts=OUTBOX.c.attempts + 1))
_TRACEPARENT_PLACEHOLDER = f"00-{'0' * 32}-{'0' * 16}-01"  # as long as any traceparent


def publish_later(session: Session, event: Event, *, source: str) -> str:
    """Queue `event` for publishing when the caller's transaction commits. Returns its event id.

    Runs inside the caller's transaction: the event goes out if and only if the change that
    caused it is committed. Raises `EventTooLarge` (queuing nothing) when its record would
    exceed `MAX_EVENT_BYTES`: the broker would refuse it.
    """
    encoded, value = encode(event, source=source)
    event_id = encoded["ce_id"].decode()
    headers = {k: v.decode() for k, v in encoded.items()}
    key = event.key()
    size = record_size(key, {**headers, tracing.EVENT_HEADER: _TRACEPARENT_PLACEHOLDER}, value)
    if size > MAX_EVENT_BYTES:
        raise EventTooLarge(event.event_type, size)
    # The event's own span in the current trace: the relay's send and every consumer continue it.
    headers[tracing.EVENT_HEADER] = tracing.child_traceparent(f"{event.topic} create", attributes={
        "messaging.system": "kafka", "messaging.operation.type": "create", "messaging.destination.name": event.topic,
        "messaging.message.id": event_id, "cloudevents.event_type": event.event_type})
    # A plain INSERT, not an ORM object to flush: a tenth of the CPU, and every event costs one.
    session.execute(_INSERT_OUTBOX, {"event_id": event_id, "topic": event.topic, "key": key,
                                     "headers": json.dumps(headers), "value": value, "created_at": utcnow(),
                                     "attempts": 0})
    wakeups.wake_after_commit(session, RELAY)
    return event_id


# Errors aiokafka marks not retriable that still say nothing against the record itself: the
# producer, the connection or the credentials failed. Those rows are retried, never parked.
_NOT_THE_RECORDS_FAULT = (
    kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError, kafka_errors.NoBrokersAvailable,
    kafka_errors.BrokerNotAvailableError, kafka_errors.KafkaUnavailableError, kafka_errors.UnknownError,
    kafka_errors.ProducerClosed, kafka_errors.ProducerFenced, kafka_errors.IllegalStateError,
    kafka_errors.OutOfOrderSequenceNumber, kafka_errors.UnknownProducerId, kafka_errors.InvalidProducerEpoch,
    kafka_errors.AuthenticationFailedError, kafka_errors.SaslAuthenticationFailed,
    kafka_errors.CorruptRecordException,  # a checksum broken on the way, not in the row
)


def is_unfixable(error: BaseException) -> bool:
    """True when the broker (or the producer, before sending) refused the record for a reason
    that retrying the same record cannot fix: too large, an invalid topic, not authorised."""
    return (isinstance(error, kafka_errors.KafkaError) and not error.retriable
            and not isinstance(error, _NOT_THE_RECORDS_FAULT))


@dataclass(frozen=True)
class OutboxHealth:
    backlog: int  # rows neither sent nor parked
    oldest_age: float  # seconds since the oldest of them was queued; 0 when none waits
    parked: int


def observe_outbox(engine: Engine, now: datetime | None = None) -> OutboxHealth:
    """The outbox's backlog, the age of its oldest waiting row and its parked rows, also set
    on the gauges. Three queries, each on a partial index."""
    now = now or utcnow()
    pending = OutboxMessage.sent_at.is_(None) & OutboxMessage.parked_at.is_(None)  # type: ignore[union-attr]
    with Session(engine) as session:
        backlog = session.exec(select(func.count()).select_from(OutboxMessage).where(pending)).one()
        # The first row by id rather than min(created_at): one index entry, however long the backlog.
        oldest = session.exec(select(OutboxMessage.created_at).where(pending)
                              .order_by(OutboxMessage.id).limit(1)).first()  # type: ignore[arg-type]
        parked = session.exec(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.parked_at.is_not(None))).one()  # type: ignore[union-attr]
    age = max((now - as_utc(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0
    OUTBOX_BACKLOG.set(backlog)
    OUTBOX_OLDEST_AGE.set(age)
    OUTBOX_PARKED.set(parked)
    return OutboxHealth(backlog=backlog, oldest_age=age, parked=parked)


def parked_messages(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.parked_at.is_not(None))  # type: ignore[union-attr]
                                 .order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def release_parked(engine: Engine, ids: Sequence[int] | None = None) -> list[int]:
    """Re-queue parked rows (those in `ids`, or all): the relay publishes them next, in id
    order. Their last error stays for the record until they go out. Returns the ids released."""
    with Session(engine) as session:
        query = select(OutboxMessage.id).where(OutboxMessage.parked_at.is_not(None))  # type: ignore[union-attr]
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
        released = list(session.exec(query).all())
        if released:
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(released))  # type: ignore[union-attr]
                         .values(parked_at=None))
            wakeups.wake_after_commit(session, RELAY)
        session.commit()
        return released


def _mark(session: Session, sent: list[int], failed: dict[int, dict], now: datetime) -> None:
    """Commits what the relay's batch did: one UPDATE for the rows sent, one for each that failed."""
    if sent:
        session.execute(_MARK_SENT, {"ids": sent, "now": now})
    for row_id, values in failed.items():
        session.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(**values))
    session.commit()


ProducerFactory = Callable[[], AIOKafkaProducer]


class OutboxRelay:
    """Publishes unsent outbox rows in insertion order, then marks them sent.

    Rows are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas of a service
    never publish the same row twice at once. (A crash between the broker's ack and the
    commit can publish a row again; consumers are idempotent through their inbox.)

    The relay has a producer of its own and replaces it after any failed send: aiokafka's
    idempotent producer numbers each partition's batches and does not take a refused batch's
    numbers back, so after one refusal every later record to that partition would fail with
    OutOfOrderSequenceNumber. A new producer starts the numbering afresh.

    Rows keep the contract's topic name; the relay sends each to `kafka.topic(name)` (the
    installation's prefix added), with the connection and security of `kafka`.
    """

    def __init__(self, engine: Engine, kafka: KafkaSettings | str | None = None, *,
                 client_id: str = "postsale-outbox-relay", batch_size: int = 200, poll_interval: float = 0.5) -> None:
        self.engine = engine
        self.kafka = kafka_settings(kafka)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._claim_rows = (select(OUTBOX.c.id, OUTBOX.c.event_id, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.headers,
                                   OUTBOX.c.value, OUTBOX.c.attempts)
                            .where(OUTBOX.c.sent_at.is_(None), OUTBOX.c.parked_at.is_(None))
                            .order_by(OUTBOX.c.id).limit(batch_size).with_for_update(skip_locked=True))
        self._new_producer: ProducerFactory = lambda: AIOKafkaProducer(
            **self.kafka.client_kwargs(), client_id=client_id, enable_idempotence=True, acks="all")
        self._producer: AIOKafkaProducer | None = None

    async def run(self) -> None:
        """Publishes until cancelled: when a commit queued rows, and every poll interval."""
        try:
            await wakeups.run_loop(self.engine, RELAY, self._publish_full_batch, poll_interval=self.poll_interval)
        finally:
            await self.close()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _producer_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _publish_full_batch(self) -> bool:
        published, parked = await self._publish_batch()
        return published + parked == self.batch_size

    def _claim(self, session: Session) -> list[Row]:
        return list(session.execute(self._claim_rows).all())

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows went out."""
        published, _parked = await self._publish_batch()
        return published

    async def _publish_batch(self) -> tuple[int, int]:
        """Publish one batch; returns how many rows went out and how many were parked."""
        # Database calls run in a worker thread so a busy database never blocks the event
        # loop (and with it the service's consumers and HTTP handlers). Plain SQL rather than ORM
        # objects: claiming, loading and marking each row through the ORM cost ten times the CPU.
        session = Session(self.engine)
        try:
            rows = await asyncio.to_thread(self._claim, session)
            if not rows:
                await asyncio.to_thread(session.rollback)
                return 0, 0
            results = await self._send(rows)
            now = utcnow()
            sent: list[int] = []
            failed: dict[int, dict] = {}  # row id -> its new attempts, error, and parked_at when parked
            for row, result in zip(rows, results):
                if isinstance(result, BaseException):
                    failed[row.id] = {"attempts": row.attempts + 1, "last_error": repr(result)[:2000]}
                    if is_unfixable(result):
                        failed[row.id]["parked_at"] = now
                        OUTBOX_PARKED_TOTAL.labels(topic=row.topic).inc()
                        log.error("parked outbox row %s (%s) for %s: the broker refused it: %r",
                                  row.id, row.event_id, row.topic, result)
                        continue
                    log.warning("publishing outbox row %s to %s failed: %r", row.id, row.topic, result)
                    # Later rows may share this row's key: stop here so their order holds.
                    break
                sent.append(row.id)
                OUTBOX_PUBLISHED.labels(topic=row.topic).inc()
            await asyncio.to_thread(_mark, session, sent, failed, now)
            published, parked = len(sent), sum("parked_at" in f for f in failed.values())
            if any(isinstance(result, BaseException) for result in results):
                await self.close()  # see the class docstring
            return published, parked
        finally:
            await asyncio.to_thread(session.close)

    async def _send(self, rows: list[Row]) -> list[object]:
        """Each row's send result (its metadata or its error), in order; shorter than `rows`
        when a send could not even be queued for a passing reason (the rows after it wait)."""
        producer = await self._producer_started()
        loop = asyncio.get_running_loop()
        sends: list[asyncio.Future] = []
        spans = []
        # Queued one after the other (so in order), acknowledged together.
        for row in rows:
            topic = self.kafka.topic(row.topic)
            headers = json.loads(row.headers)
            # A child of the event's create span (its ce_traceparent): the trace of the work that queued it.
            spans.append(tracing.start_span(f"{topic} send", traceparent=headers.get(tracing.EVENT_HEADER) or "",
                                            kind=SpanKind.PRODUCER, attributes={
                "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": topic,
                "messaging.message.id": row.event_id, "messaging.kafka.message.key": row.key}))
            try:
                sends.append(await producer.send(
                    topic, row.value, key=row.key.encode(),
                    headers=[(name, value.encode()) for name, value in headers.items()]))
            except Exception as exc:  # noqa: BLE001 - refused before sending (too large for the producer, say)
                refused = loop.create_future()
                refused.set_exception(exc)
                sends.append(refused)
                if not is_unfixable(exc):
                    break
        results = await asyncio.gather(*sends, return_exceptions=True)
        for sent, result in zip(spans, results):
            if isinstance(result, BaseException):
                tracing.end_span(sent, result)
            else:
                sent.set_attribute("messaging.destination.partition.id", str(result.partition))
                sent.set_attribute("messaging.kafka.offset", result.offset)
                tracing.end_span(sent)
        return results
