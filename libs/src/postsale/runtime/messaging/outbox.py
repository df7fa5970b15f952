"""The transactional outbox and the relay that publishes it.

A service never publishes from inside a request or a handler: it adds an outbox row in the
same database transaction as its change (`publish_later`), and the relay publishes the rows
with an idempotent producer (acks from all in-sync replicas) and marks them sent. A row whose
publish fails stays unsent and is retried until it goes out, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

from faststream.kafka import KafkaBroker
from sqlalchemy import Column, LargeBinary
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import Event, encode
from postsale.runtime import tracing, wakeups
from postsale.runtime.clock import utcnow
from postsale.runtime.metrics import OUTBOX_PUBLISHED

log = logging.getLogger(__name__)
RELAY = "outbox-relay"


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

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


def publish_later(session: Session, event: Event, *, source: str) -> str:
    """Queue `event` for publishing when the caller's transaction commits. Returns its event id.

    Runs inside the caller's transaction: the event goes out if and only if the change that
    caused it is committed.
    """
    headers, value = encode(event, source=source)
    event_id = headers["ce_id"].decode()
    session.add(
        OutboxMessage(
            event_id=event_id,
            topic=event.topic,
            key=event.key(),
            headers=json.dumps({**{k: v.decode() for k, v in headers.items()},
                                tracing.EVENT_HEADER: tracing.child_traceparent()}),
            value=value,
        )
    )
    wakeups.wake_after_commit(session, RELAY)
    return event_id


class OutboxRelay:
    """Publishes unsent outbox rows in insertion order, then marks them sent.

    Rows are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas of a service
    never publish the same row twice at once. (A crash between the broker's ack and the
    commit can publish a row again; consumers are idempotent through their inbox.)
    """

    def __init__(self, engine: Engine, broker: KafkaBroker, *, batch_size: int = 200,
                 poll_interval: float = 0.5) -> None:
        self.engine = engine
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    async def run(self) -> None:
        """Publishes until cancelled: when a commit queued rows, and every poll interval."""
        await wakeups.run_loop(self.engine, RELAY, self._publish_full_batch, poll_interval=self.poll_interval)

    async def _publish_full_batch(self) -> bool:
        return await self.publish_pending() == self.batch_size

    def _claim(self, session: Session) -> list[OutboxMessage]:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
                .order_by(OutboxMessage.id)  # type: ignore[arg-type]
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
        )

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows went out."""
        # Database calls run in a worker thread so a busy database never blocks the event
        # loop (and with it the service's consumers and HTTP handlers).
        session = Session(self.engine, expire_on_commit=False)
        try:
            rows = await asyncio.to_thread(self._claim, session)
            if not rows:
                await asyncio.to_thread(session.rollback)
                return 0
            sends = [
                await self.broker.publish(
                    row.value, topic=row.topic, key=row.key.encode(), headers=json.loads(row.headers),
                    no_confirm=True,
                )
                for row in rows
            ]
            results = await asyncio.gather(*sends, return_exceptions=True)
            sent_at = utcnow()
            published = 0
            for row, result in zip(rows, results):
                row.attempts += 1
                if isinstance(result, BaseException):
                    row.last_error = repr(result)[:2000]
                    log.warning("publishing outbox row %s to %s failed: %r", row.id, row.topic, result)
                    # Later rows may share this row's key: stop here so their order holds.
                    break
                row.sent_at = sent_at
                published += 1
                OUTBOX_PUBLISHED.labels(topic=row.topic).inc()
            await asyncio.to_thread(session.commit)
            return published
        finally:
            await asyncio.to_thread(session.close)
