"""The outbox never stalls, on the real broker and on SQLite and PostgreSQL: a row the broker
refuses for good is parked and the rows after it go out; an operator lists and releases it;
/readyz reports an outbox that stopped flowing; consumer lag is measured; a dead letter
replays exactly the record that failed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from postsale.contracts import ProductPublished, encode
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.messaging import OutboxMessage, OutboxRelay, Subscription, subscribe
from postsale.runtime.messaging.consumer import LagMonitor, RetryPolicy
from postsale.runtime.messaging.deadletters import list_dead_letters, replay_dead_letters
from postsale.runtime.messaging.outbox import observe_outbox
from postsale.runtime.service import ensure_topics, make_broker
from postsale.runtime.web import add_operational_routes

pytestmark = pytest.mark.integration

SMALL_TOPIC_LIMIT = 10_000  # the test topic's max.message.bytes


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"outbox_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    create_tables(engine)
    yield engine
    engine.dispose()


async def until(check, timeout: float = 30):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


async def create_topic(bootstrap: str, name: str, configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, topic_configs=configs or {})])
    finally:
        await admin.close()


async def set_topic_config(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str) -> list:
    """Every record of the topic's single partition, from its start to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records = []
        while await consumer.position(tp) < end:
            records.extend((await consumer.getmany(tp, timeout_ms=1000)).get(tp, []))
        return records
    finally:
        await consumer.stop()


def queue_row(engine, topic: str, name: str, size: int = 0) -> int:
    """An outbox row written directly, as `publish_later` would (which refuses oversized events)."""
    with Session(engine) as session:
        row = OutboxMessage(event_id=f"{name}-{uuid.uuid4().hex}", topic=topic, key="same-key",
                            headers=json.dumps({"ce_id": name}), value=name.encode() + b"x" * size)
        session.add(row)
        session.commit()
        return row.id


def rows(engine) -> dict[int, OutboxMessage]:
    with Session(engine) as session:
        return {row.id: row for row in session.exec(select(OutboxMessage)).all()}


def operator(command: list[str], service: str, engine, bootstrap: str) -> str:
    """The operator command as an operator runs it, the database named by `<SERVICE>_DATABASE_URL`."""
    env = {**os.environ, f"{service.upper()}_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    done = subprocess.run([sys.executable, "-m", "postsale.runtime.messaging.deadletters", *command],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_rows_the_broker_refuses_are_parked_and_the_rows_after_them_go_out(engine, kafka_bootstrap):
    service = f"svc{uuid.uuid4().hex[:8]}"
    topic = f"test.outbox.{service}"
    await create_topic(kafka_bootstrap, topic, {"max.message.bytes": str(SMALL_TOPIC_LIMIT)})
    parked_metric = {"topic": topic}
    parked_before = REGISTRY.get_sample_value("postsale_outbox_parked_total", parked_metric) or 0

    first = queue_row(engine, topic, "first")
    over_topic_limit = queue_row(engine, topic, "over-topic-limit", size=2 * SMALL_TOPIC_LIMIT)  # the broker refuses
    second = queue_row(engine, topic, "second")
    over_request_limit = queue_row(engine, topic, "over-request-limit", size=2 * 1024 * 1024)  # the producer refuses
    third = queue_row(engine, topic, "third")

    relay = OutboxRelay(engine, kafka_bootstrap, poll_interval=0.1)
    running = asyncio.create_task(relay.run())
    try:
        await until(lambda: asyncio.sleep(0, result=all(rows(engine)[i].sent_at for i in (first, second, third))))
        outbox = rows(engine)
        for parked in (over_topic_limit, over_request_limit):
            assert outbox[parked].sent_at is None and outbox[parked].parked_at is not None
            assert "MessageSizeTooLargeError" in outbox[parked].last_error
        # Every row after a refused one went out, once and in order.
        assert [r.value for r in await read_all(kafka_bootstrap, topic)] == [b"first", b"second", b"third"]
        assert REGISTRY.get_sample_value("postsale_outbox_parked_total", parked_metric) == parked_before + 2
        health = await asyncio.to_thread(observe_outbox, engine)
        assert (health.backlog, health.oldest_age, health.parked) == (0, 0.0, 2)
        assert REGISTRY.get_sample_value("postsale_outbox_parked_rows") == 2

        listed = await asyncio.to_thread(operator, ["list", service], service, engine, kafka_bootstrap)
        assert f"outbox #{over_topic_limit} " in listed and f"outbox #{over_request_limit} " in listed
        assert "MessageSizeTooLargeError" in listed
        assert "2 parked outbox row(s)" in listed

        # The cause fixed for one of them (the topic takes larger records now), the operator
        # releases it and the relay publishes it; the other one, released unfixed, parks again.
        await set_topic_config(kafka_bootstrap, topic, {"max.message.bytes": str(10 * SMALL_TOPIC_LIMIT)})
        released = await asyncio.to_thread(operator, ["release", service, str(over_topic_limit)], service, engine,
                                           kafka_bootstrap)
        assert f"released 1 parked outbox row(s) [{over_topic_limit}]" in released
        await until(lambda: asyncio.sleep(0, result=rows(engine)[over_topic_limit].sent_at is not None))
        assert [r.value[:16] for r in await read_all(kafka_bootstrap, topic)][-1] == b"over-topic-limit"

        await asyncio.to_thread(operator, ["release", service, "--all"], service, engine, kafka_bootstrap)
        await until(lambda: asyncio.sleep(0, result=rows(engine)[over_request_limit].attempts == 2
                                          and rows(engine)[over_request_limit].parked_at is not None))
        assert rows(engine)[over_request_limit].sent_at is None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_readyz_reports_an_outbox_that_stopped_flowing_until_it_drains(kafka_bootstrap, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ready.db'}")
    create_tables(engine)
    now = [utcnow()]
    app = FastAPI()
    app.state.engine = engine
    app.state.broker = make_broker(kafka_bootstrap, "readyz-test")
    add_operational_routes(app, outbox_max_age=60, clock=lambda: now[0])
    topic = f"test.readyz.{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic)
    await app.state.broker.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/readyz")).status_code == 200

            row_id = queue_row(engine, topic, "waiting")
            queued_at = as_utc(rows(engine)[row_id].created_at)
            now[0] = queued_at + timedelta(seconds=59)
            assert (await client.get("/readyz")).status_code == 200  # waiting, but not for long

            now[0] = queued_at + timedelta(seconds=61)
            stalled = await client.get("/readyz")
            assert stalled.status_code == 503
            assert "outbox" in stalled.json()["problems"]
            assert stalled.json()["outbox"] == {"backlog": 1, "oldest_unsent_age_seconds": 61.0, "parked": 0}
            metrics = (await client.get("/metrics/")).text
            assert "postsale_outbox_backlog 1.0" in metrics
            assert "postsale_outbox_oldest_unsent_age_seconds 61.0" in metrics

            relay = OutboxRelay(engine, kafka_bootstrap)
            try:
                assert await relay.publish_pending() == 1
            finally:
                await relay.close()
            drained = await client.get("/readyz")
            assert drained.status_code == 200
            assert drained.json()["outbox"] == {"backlog": 0, "oldest_unsent_age_seconds": 0.0, "parked": 0}
    finally:
        await app.state.broker.stop()
        engine.dispose()


async def test_consumer_lag_is_measured_per_group_and_partition(kafka_bootstrap):
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    group = f"test-lag-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"record {i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        await consumer.commit({tp: 2})  # handled two of five
    finally:
        await consumer.stop()

    monitor = LagMonitor(kafka_bootstrap, [group])
    try:
        assert await monitor.observe() == {(group, tp): 3}
    finally:
        await monitor.close()
    assert REGISTRY.get_sample_value("postsale_consumer_lag", {"group": group, "topic": topic, "partition": "0"}) == 3


async def test_a_dead_letter_replays_exactly_the_record_that_failed_even_one_too_large_to_copy(
        kafka_bootstrap, tmp_path):
    service = f"svc{uuid.uuid4().hex[:8]}"
    topic = f"test.replay.{service}"
    engine = make_engine(f"sqlite:///{tmp_path / 'consumer.db'}")
    create_tables(engine)
    handled: list[str] = []

    def fails_first_time(_session: Session, event: ProductPublished, _event_id: str) -> None:
        if event.product_id not in handled:
            handled.append(event.product_id)
            raise RuntimeError("downstream unavailable")

    broker = make_broker(kafka_bootstrap, service)
    subscribe(broker, engine, Subscription(service, topic, {ProductPublished: fails_first_time},
                                           retry=RetryPolicy(attempts=1)))
    await ensure_topics(kafka_bootstrap, service)
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await broker.start()
    try:
        # Headers the dead letter must keep exactly: bytes that are not UTF-8, a repeated name,
        # and no content-type (which a copy must not add).
        headers, value = encode(ProductPublished(product_id="prod_exact", name="exact", delivery_type="none",
                                                 published_at=utcnow()), source="/tests")
        exact = [(name, v) for name, v in headers.items() if name != "content-type"]
        exact += [("x-binary", b"\xff\x00\xfe"), ("x-repeated", b"1"), ("x-repeated", b"2")]
        await producer.send_and_wait(topic, value, key=b"key-1", headers=exact)
        # A record near the broker's limit fails to decode; its dead letter, with the headers
        # added, would be too large: it is written without its value, and the partition moves on.
        near_limit = b"{" + b"x" * 1_048_200  # the producer takes up to 1 MiB a request
        broken_headers = [("ce_id", uuid.uuid4().hex.encode()), ("ce_type", b"postsale.product.published"),
                          ("ce_source", b"/tests"), ("ce_specversion", b"1.0")]
        await producer.send_and_wait(topic, near_limit, key=b"key-2", headers=broken_headers)

        letters = await until(lambda: _two(list_dead_letters(kafka_bootstrap, service)))
        by_key = {letter.key: letter for letter in letters}
        assert by_key[b"key-1"].original_headers == exact
        assert by_key[b"key-1"].value == value and not by_key[b"key-1"].value_omitted
        assert by_key[b"key-2"].value_omitted and by_key[b"key-2"].value is None
        assert by_key[b"key-2"].original_headers == broken_headers
        assert (by_key[b"key-2"].original_topic, by_key[b"key-2"].original_partition) == (topic, 0)

        assert len(await replay_dead_letters(kafka_bootstrap, service)) == 2
        replayed = (await read_all(kafka_bootstrap, topic))[2:]
        assert [(r.key, list(r.headers), r.value) for r in replayed] == [
            (b"key-1", exact, value), (b"key-2", broken_headers, near_limit)]
    finally:
        await broker.stop()
        await producer.stop()
        engine.dispose()


async def _two(letters):
    found = await letters
    return found if len(found) >= 2 else None
