"""Every service process follows accounts' public topic on the real broker: a session ended before
the process started is refused at once, one ended later within about a second, and the newest theme
is the one applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from postsale.contracts import encode, topics
from postsale.contracts.events import SessionEnded, ThemeChanged
from postsale.runtime.accounts_feed import AccountsFeed, CurrentTheme
from postsale.runtime.auth import RevokedSessions
from postsale.runtime.service import ensure_topics

pytestmark = pytest.mark.integration


async def publish(bootstrap: str, *events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            headers, value = encode(event, source="/tests")
            await producer.send_and_wait(topics.CUSTOMERS.name, value, key=event.key().encode(),
                                         headers=list(headers.items()))
    finally:
        await producer.stop()


def ended(session_id: str) -> SessionEnded:
    now = datetime.now(timezone.utc)
    return SessionEnded(customer_id="cus_feed", session_id=session_id, reason="logout", ended_at=now,
                        expires_at=now + timedelta(hours=1))


async def test_ended_sessions_reach_every_process_before_and_after_it_starts(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, "tests")
    before, after = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
    old = datetime.now(timezone.utc) - timedelta(minutes=1)
    await publish(kafka_bootstrap, ended(before),
                  ThemeChanged(settings={"background_color": "#111111"}, changed_at=datetime.now(timezone.utc)),
                  ThemeChanged(settings={"background_color": "#222222"}, changed_at=old))  # late and older
    revoked, theme = RevokedSessions(), CurrentTheme()
    feed = AccountsFeed(kafka_bootstrap, revoked=revoked, theme=theme, client_id="tests-feed")
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), 30)
        assert revoked.is_ended(before)  # known before the process serves a request
        assert theme.settings == {"background_color": "#111111"}
        started = time.monotonic()
        await publish(kafka_bootstrap, ended(after))
        while not revoked.is_ended(after):
            assert time.monotonic() - started < 5, "the ended session did not arrive within 5 s"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
