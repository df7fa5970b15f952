"""The consumer runtime on the real broker: retries, dead letters, the partition moving on, replay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import ProductPublished, encode
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.messaging import Subscription, subscribe
from postsale.runtime.messaging.consumer import RetryPolicy
from postsale.runtime.messaging.deadletters import list_dead_letters, replay_dead_letters
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.service import ensure_topics, make_broker

pytestmark = pytest.mark.integration


class ReplayEffect(SQLModel, table=True):
    __tablename__ = "test_replay_effects"
    id: int | None = Field(default=None, primary_key=True)
    product_id: str


def product(name: str) -> ProductPublished:
    return ProductPublished(product_id=f"prod_{name}", name=name, delivery_type="download",
                            published_at=datetime.now(timezone.utc))


def scratch(tmp_path) -> tuple[str, str, object, list[int]]:
    """A service of its own: its name, its topic, and its SQLite database with its commits counted."""
    service = f"svc{uuid.uuid4().hex[:8]}"
    engine = make_engine(f"sqlite:///{tmp_path / 'consumer.db'}")
    create_tables(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    return service, f"test.products.{service}", engine, commits


def effects_in(engine) -> list[str]:
    with Session(engine) as session:
        return [e.product_id for e in session.exec(select(ReplayEffect).order_by(ReplayEffect.id)).all()]


async def send_products(producer: AIOKafkaProducer, topic: str, *names: str) -> None:
    for name in names:
        headers, value = encode(product(name), source="/tests")
        await producer.send_and_wait(topic, value, key=b"k", headers=list(headers.items()))


async def until(check, timeout: float = 30):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout}s")


async def test_failing_handler_is_dead_lettered_then_replayed_after_the_fix(kafka_bootstrap, tmp_path):
    service = f"svc{uuid.uuid4().hex[:8]}"
    topic = f"test.products.{service}"
    engine = make_engine(f"sqlite:///{tmp_path / 'consumer.db'}")
    create_tables(engine)
    downstream_up = False

    def record_product(session: Session, event: ProductPublished, _event_id: str) -> None:
        if not downstream_up:
            raise RuntimeError("downstream unavailable")
        session.add(ReplayEffect(product_id=event.product_id))

    def effects() -> list[str]:
        with Session(engine) as session:
            return [e.product_id for e in session.exec(select(ReplayEffect)).all()]

    broker = make_broker(kafka_bootstrap, service)
    subscribe(broker, engine, Subscription(service, topic, {ProductPublished: record_product},
                                           retry=RetryPolicy(attempts=3, first_delay=0.05)))
    await ensure_topics(kafka_bootstrap, service)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await broker.start()
    try:
        first, second = product("first"), product("second")
        headers, value = encode(first, source="/tests")
        await producer.send_and_wait(topic, value, key=b"k", headers=list(headers.items()))

        letters = await until(lambda: list_dead_letters(kafka_bootstrap, service))
        assert [(l.original_topic, l.error_type, l.error, l.attempts, l.value) for l in letters] == [
            (topic, "RuntimeError", "downstream unavailable", 3, value)]
        assert effects() == []

        downstream_up = True
        headers2, value2 = encode(second, source="/tests")
        await producer.send_and_wait(topic, value2, key=b"k", headers=list(headers2.items()))
        await until(lambda: asyncio.sleep(0, result=effects() == ["prod_second"]))

        assert len(await replay_dead_letters(kafka_bootstrap, service)) == 1
        await until(lambda: asyncio.sleep(0, result=sorted(effects()) == ["prod_first", "prod_second"]))
        assert await replay_dead_letters(kafka_bootstrap, service) == []  # replay remembers what it did

        # A replayed event that was already handled changes nothing: same ce_id, inbox skips it.
        await producer.send_and_wait(topic, value2, key=b"k", headers=list(headers2.items()))
        await asyncio.sleep(1.5)
        assert sorted(effects()) == ["prod_first", "prod_second"]
    finally:
        await broker.stop()
        await producer.stop()


async def test_records_the_broker_holds_are_handled_in_one_transaction_and_a_failing_one_alone(kafka_bootstrap,
                                                                                                  tmp_path):
    service, topic, engine, commits = scratch(tmp_path)

    def record_product(session: Session, event_: ProductPublished, _event_id: str) -> None:
        if event_.name == "broken":
            raise RuntimeError("cannot handle this one")
        session.add(ReplayEffect(product_id=event_.product_id))

    def effects() -> list[str]:
        return effects_in(engine)

    broker = make_broker(kafka_bootstrap, service)
    subscribe(broker, engine, Subscription(service, topic, {ProductPublished: record_product},
                                           retry=RetryPolicy(attempts=2, first_delay=0.05)))
    await ensure_topics(kafka_bootstrap, service)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def send(*names: str) -> None:
        await send_products(producer, topic, *names)

    try:
        # Waiting on the topic before the consumer starts: fetched, and handled, together.
        first = [f"a{i}" for i in range(40)]
        await send(*first)
        await broker.start()
        await until(lambda: asyncio.sleep(0, result=len(effects()) == 40))
        assert effects() == [f"prod_{name}" for name in first]
        assert len(commits) < 10, f"{len(commits)} commits for 40 records"

        # A batch with a record whose use case fails and one that is not an event at all: the
        # others are kept, in order, and each of the two is set aside alone.
        commits.clear()
        await producer.send_and_wait(topic, b"not an event", key=b"k")
        await send("b0", "broken", "b1")

        async def two_dead_letters():
            letters = await list_dead_letters(kafka_bootstrap, service)
            return letters if len(letters) == 2 else None

        letters = await until(two_dead_letters)
        assert sorted((letter.error_type, letter.attempts) for letter in letters) == [("DecodeError", 0),
                                                                                      ("RuntimeError", 2)]
        await until(lambda: asyncio.sleep(0, result=len(effects()) == 42))
        assert effects()[40:] == ["prod_b0", "prod_b1"]
    finally:
        await broker.stop()
        await producer.stop()


async def test_a_groups_subscriptions_share_one_consumer_each_topic_to_its_own_use_case(kafka_bootstrap, tmp_path):
    service, topic, engine, _commits = scratch(tmp_path)
    other = f"{topic}.other"

    def on(where: str):
        def handle(session: Session, event_: ProductPublished, _event_id: str) -> None:
            if event_.name == "broken":
                raise RuntimeError(f"{where} cannot handle this one")
            session.add(ReplayEffect(product_id=f"{where}:{event_.product_id}"))
        return handle

    first = Subscription(service, topic, {ProductPublished: on("first")})
    with pytest.raises(ValueError, match="two subscriptions of"):  # a group reads a topic once
        subscribe(make_broker(kafka_bootstrap, service), engine, [first, first])
    broker = make_broker(kafka_bootstrap, service)
    subscribe(broker, engine, [first, Subscription(service, other, {ProductPublished: on("second")},
                                                   retry=RetryPolicy(attempts=2, first_delay=0.05))])
    await ensure_topics(kafka_bootstrap, service)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # Waiting on both topics before the consumer starts, so that one fetch can bring both.
        await send_products(producer, topic, "a0", "a1")
        await send_products(producer, other, "b0", "broken", "b1")
        await broker.start()
        letters = await until(lambda: list_dead_letters(kafka_bootstrap, service))
        await until(lambda: asyncio.sleep(0, result=len(effects_in(engine)) == 4))
        effects = effects_in(engine)
        assert [e for e in effects if e.startswith("first:")] == ["first:prod_a0", "first:prod_a1"]
        assert [e for e in effects if e.startswith("second:")] == ["second:prod_b0", "second:prod_b1"]
        assert [(l.original_topic, l.consumer, l.error) for l in letters] == [
            (other, f"{service}:{other}", "second cannot handle this one")]
        with Session(engine) as session:  # each topic's events in its own subscription's inbox
            assert sorted(row.consumer for row in session.exec(select(InboxMessage))) == \
                [f"{service}:{topic}"] * 2 + [f"{service}:{other}"] * 2
        # What `kafka-consumer-groups --describe` would show: the group has one member, for both topics.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_consumer_groups([f"postsale-{service}"])
        finally:
            await admin.close()
        [(_error, _group, state, _protocol_type, _protocol, members)] = [tuple(g)[:6] for g in described.groups]
        assert (state, len(members)) == ("Stable", 1)
    finally:
        await broker.stop()
        await producer.stop()


async def test_events_no_use_case_wants_are_passed_over_without_a_transaction_or_an_inbox_row(kafka_bootstrap,
                                                                                                 tmp_path):
    service, topic, engine, commits = scratch(tmp_path)
    check = {"fails": False, "calls": 0}

    def record_product(session: Session, event_: ProductPublished, _event_id: str) -> None:
        session.add(ReplayEffect(product_id=event_.product_id))

    def wanted(engine_, events: list[ProductPublished]) -> list[bool]:
        check["calls"] += 1
        if check["fails"]:
            raise RuntimeError("the database does not answer")
        return [e.name.startswith("keep") for e in events]

    def effects() -> list[str]:
        return effects_in(engine)

    def inbox() -> int:
        with Session(engine) as session:
            return len(session.exec(select(InboxMessage)).all())

    async def committed_offset(group: str, topic_: str) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return offsets.get(TopicPartition(topic_, 0)) is not None and offsets[TopicPartition(topic_, 0)].offset == 6

    def consumer(wanted_check) -> object:
        broker = make_broker(kafka_bootstrap, service)
        subscribe(broker, engine, Subscription(service, topic, {ProductPublished: record_product},
                                               wanted=wanted_check))
        return broker

    await ensure_topics(kafka_bootstrap, service)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def send(*names: str) -> None:
        await send_products(producer, topic, *names)

    broker = consumer(wanted)
    try:
        await send("skip0", "keep1", "skip2")
        await broker.start()
        await until(lambda: asyncio.sleep(0, result=effects() == ["prod_keep1"]))
        await send("skip3")
        await until(lambda: asyncio.sleep(0, result=check["calls"] >= 2 and not commits[1:]))
        assert (effects(), inbox(), len(commits)) == (["prod_keep1"], 1, 1)

        # When the check cannot answer, every event goes to its use case, as without a check.
        check["fails"] = True
        await send("skip4")
        await until(lambda: asyncio.sleep(0, result=effects() == ["prod_keep1", "prod_skip4"]))
        assert inbox() == 2
        check["fails"] = False
        await send("skip5")
        await until(lambda: committed_offset(f"postsale-{service}", topic), timeout=30)
    finally:
        await broker.stop()

    # The events passed over were consumed: a consumer of the same group that wants everything
    # starts after them, and never sees skip5.
    broker = consumer(None)
    try:
        await broker.start()
        await send("keep6")
        await until(lambda: asyncio.sleep(0, result=len(effects()) >= 3))
        assert effects() == ["prod_keep1", "prod_skip4", "prod_keep6"]
    finally:
        await broker.stop()
        await producer.stop()


async def test_topics_are_created_with_their_documented_retention_and_compaction(kafka_bootstrap):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from postsale.contracts import topics

    await ensure_topics(kafka_bootstrap, "notifications")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in topics.ALL])
    finally:
        await admin.close()
    configs = {name: {entry[0]: entry[1] for entry in entries}
               for response in described for _, _, _, name, entries in response.resources}
    assert configs["entitlements.download-links.v1"]["retention.ms"] == str(24 * 3600 * 1000)
    assert configs["checkout.purchases.v1"]["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert configs["entitlements.products.v1"]["cleanup.policy"] == "compact"
