"""What every service process learns from accounts' public topic, without a consumer group: ended
sessions (`SessionEnded`, so that a logged-out token is refused everywhere within about a second)
and the seller's theme (`ThemeChanged`, so that every customer page looks the same).

Each process reads `accounts.customers.v1` from the start of its retention on start-up (an ended
session stays in the set until its token expires; the newest theme wins), then follows it. No
offset is committed: every replica needs every event. `create_service_app` starts it; nothing else
is needed in a service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from postsale.contracts import DecodeError, SessionEnded, ThemeChanged, UnknownEventType, decode, topics
from postsale.runtime.auth import RevokedSessions
from postsale.runtime.clock import as_utc
from postsale.runtime.settings import KafkaSettings, kafka_settings

log = logging.getLogger(__name__)
TOPIC = topics.CUSTOMERS.name
PRUNE_EVERY_SECONDS = 60.0


class CurrentTheme:
    """The newest theme settings seen (None: Postsale's default look)."""

    def __init__(self) -> None:
        self.settings: dict | None = None
        self.changed_at: datetime | None = None

    def apply(self, settings: dict | None, changed_at: datetime) -> None:
        changed_at = as_utc(changed_at)
        if self.changed_at is None or changed_at >= self.changed_at:
            self.settings, self.changed_at = settings, changed_at


class AccountsFeed:
    def __init__(self, kafka: KafkaSettings | str | None, *, revoked: RevokedSessions, theme: CurrentTheme,
                 client_id: str = "postsale-accounts-feed") -> None:
        self.kafka = kafka
        self.revoked = revoked
        self.theme = theme
        self.client_id = client_id
        self.caught_up = asyncio.Event()

    def handle(self, headers, value) -> None:
        try:
            event = decode(headers, value)
        except (UnknownEventType, DecodeError):
            return  # another event of the topic, or not one: nothing for this feed
        if isinstance(event, SessionEnded):
            self.revoked.add(event.session_id, event.expires_at)
        elif isinstance(event, ThemeChanged):
            self.theme.apply(event.settings or None, event.changed_at)

    async def run(self) -> None:
        """Follows the topic until cancelled; a failure is logged and the feed starts again."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed must outlive a broker hiccup
                log.warning("the accounts feed failed, starting again: %r", exc)
                await asyncio.sleep(3)

    async def _follow(self) -> None:
        kafka = kafka_settings(self.kafka)
        topic = kafka.topic(TOPIC)
        # Without a group, a subscription is assigned every partition of the topic (and those added
        # later), read from the start: no offset is ever committed.
        consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id=self.client_id, fetch_max_wait_ms=200)
        await consumer.start()
        try:
            ends: dict[TopicPartition, int] | None = None
            pruned = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in batches.values():
                    for record in records:
                        self.handle(record.headers, record.value)
                if not self.caught_up.is_set():
                    partitions = consumer.assignment()
                    if partitions and ends is None:
                        ends = await consumer.end_offsets(list(partitions))
                    if ends is not None and all([await consumer.position(p) >= end for p, end in ends.items()]):
                        self.caught_up.set()
                if time.monotonic() - pruned > PRUNE_EVERY_SECONDS:
                    self.revoked.prune()
                    pruned = time.monotonic()
        finally:
            await consumer.stop()
