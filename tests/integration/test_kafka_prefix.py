"""Two installations on one cluster (POSTSALE_KAFKA_PREFIX), on the real broker: each creates,
publishes to, consumes from and dead-letters into its own `<prefix>.<topic>`, in its own
`<prefix>.<group>`, with the same service names and contracts; neither (nor an unprefixed
one) sees the other's events."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import ProductPublished, topics
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.messaging import OutboxRelay, Subscription, publish_later, subscribe
from postsale.runtime.messaging.consumer import RetryPolicy
from postsale.runtime.messaging.deadletters import dead_letter_topic, list_dead_letters, replay_dead_letters
from postsale.runtime.service import ensure_topics, make_broker
from postsale.runtime.settings import KafkaSettings

pytestmark = pytest.mark.integration


class PrefixEffect(SQLModel, table=True):
    __tablename__ = "test_prefix_effects"
    id: int | None = Field(default=None, primary_key=True)
    product_id: str


async def until(check, timeout: float = 30, what: str = "the condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


class Installation:
    """One service of one installation: its database, broker (subscribed) and outbox relay."""

    def __init__(self, kafka: KafkaSettings, service: str, folder, *, fail_first: bool = False) -> None:
        self.kafka, self.service = kafka, service
        name = kafka.prefix or "plain"
        self.engine = make_engine(f"sqlite:///{folder / name}.db")
        create_tables(self.engine)
        self.failing = fail_first
        self.subscription = Subscription(service, topics.PRODUCTS.name, {ProductPublished: self._record},
                                         retry=RetryPolicy(attempts=1))
        self.broker = make_broker(kafka, service)
        subscribe(self.broker, self.engine, self.subscription, kafka)
        self.relay = OutboxRelay(self.engine, kafka)

    def _record(self, session: Session, event: ProductPublished, _event_id: str) -> None:
        if self.failing:
            raise RuntimeError("downstream unavailable")
        session.add(PrefixEffect(product_id=event.product_id))

    def effects(self) -> list[str]:
        with Session(self.engine) as session:
            return [e.product_id for e in session.exec(select(PrefixEffect)).all()]

    async def publish(self, name: str) -> str:
        with Session(self.engine) as session:
            publish_later(session, ProductPublished(product_id=f"prod_{name}", name=name, delivery_type="membership",
                                                    published_at=datetime.now(timezone.utc)), source="/tests")
            session.commit()
        assert await self.relay.publish_pending() == 1
        return f"prod_{name}"

    async def start(self) -> "Installation":
        await ensure_topics(self.kafka, self.service)
        await self.broker.start()
        return self

    async def stop(self) -> None:
        await self.relay.close()
        await self.broker.stop()
        self.engine.dispose()


async def committed(kafka_bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                if meta.offset >= 0}
    finally:
        await admin.close()


async def test_two_installations_and_an_unprefixed_one_share_a_cluster_without_seeing_each_other(
        kafka_bootstrap, tmp_path):
    service = f"shared{uuid.uuid4().hex[:8]}"  # the same service name in every installation
    run = uuid.uuid4().hex[:8]
    a, b, plain = [await Installation(KafkaSettings(bootstrap_servers=kafka_bootstrap, prefix=prefix), service,
                                      tmp_path).start()
                   for prefix in (f"a{run}", f"b{run}", "")]
    try:
        from_a = await a.publish(f"from-a-{run}")
        # On the wire: A's topic, not the contract's.
        consumer = AIOKafkaConsumer(a.kafka.topic(topics.PRODUCTS.name), bootstrap_servers=kafka_bootstrap,
                                    group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert (record.topic, record.key) == (f"a{run}.entitlements.products.v1", b"prod_" + f"from-a-{run}".encode())

        await until(lambda: asyncio.sleep(0, result=a.effects() == [from_a]), what="A handled its event")
        from_b = await b.publish(f"from-b-{run}")
        await until(lambda: asyncio.sleep(0, result=b.effects() == [from_b]), what="B handled its event")
        from_plain = await plain.publish(f"from-plain-{run}")  # the unprefixed one is live too
        await until(lambda: asyncio.sleep(0, result=from_plain in plain.effects()),
                    what="the unprefixed one handled its event")
        await asyncio.sleep(2)  # time enough for a consumer that could see the others' events to do so
        assert a.effects() == [from_a] and b.effects() == [from_b]
        assert from_a not in plain.effects() and from_b not in plain.effects()  # the unprefixed one saw neither

        # Each installation's group commits on its own topic only.
        a_offsets = await committed(kafka_bootstrap, f"a{run}.postsale-{service}")
        assert {tp.topic for tp in a_offsets} == {f"a{run}.entitlements.products.v1"}
        assert sum(a_offsets.values()) == 1
        plain_offsets = await committed(kafka_bootstrap, f"postsale-{service}")
        assert not [tp for tp in plain_offsets if tp.topic.startswith((f"a{run}.", f"b{run}."))]
    finally:
        for installation in (a, b, plain):
            await installation.stop()


async def test_a_prefixed_installation_creates_dead_letters_and_replays_them_under_its_prefix(
        kafka_bootstrap, tmp_path):
    service = f"dlq{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, prefix=f"p{uuid.uuid4().hex[:8]}")
    installation = await Installation(kafka, service, tmp_path, fail_first=True).start()
    try:
        product_id = await installation.publish("fails-first")
        letters = await until(lambda: list_dead_letters(kafka, service), what="the dead letter")
        assert [letter.original_topic for letter in letters] == [kafka.topic(topics.PRODUCTS.name)]
        unprefixed = KafkaSettings(bootstrap_servers=kafka_bootstrap)
        assert await list_dead_letters(unprefixed, service) == []  # none under the contract's name

        installation.failing = False
        assert len(await replay_dead_letters(kafka, service)) == 1
        await until(lambda: asyncio.sleep(0, result=installation.effects() == [product_id]), what="the replay handled")
        assert await committed(kafka_bootstrap, kafka.group(f"postsale-{service}-replay"))
    finally:
        await installation.stop()

    # Every topic of the installation, with the contract's configuration, under its prefix.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        ours = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()
                if t["topic"].startswith(f"{kafka.prefix}.")}
        # The contract's partitions (POSTSALE_KAFKA_PARTITIONS unset), one for the dead letters.
        assert ours == {**{kafka.topic(t.name): 3 for t in topics.ALL}, kafka.topic(dead_letter_topic(service)): 1}
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, kafka.topic(t.name))
                                                  for t in (topics.PRODUCTS, topics.PURCHASES)])
    finally:
        await admin.close()
    configs = {name: {entry[0]: entry[1] for entry in entries}
               for response in described for _, _, _, name, entries in response.resources}
    assert configs[kafka.topic(topics.PRODUCTS.name)]["cleanup.policy"] == "compact"
    assert configs[kafka.topic(topics.PURCHASES.name)]["retention.ms"] == str(7 * 24 * 3600 * 1000)


async def test_new_topics_get_the_partitions_asked_for_and_an_existing_topic_with_fewer_is_named(
        kafka_bootstrap, caplog):
    """POSTSALE_KAFKA_PARTITIONS, the ceiling of a service's replicas that consume: the topics
    made at start-up get it. A topic made before with fewer is left as it is (raised while a key's
    events wait unread, the key's next events could be read first) and named at start-up, with
    the command that raises it."""
    service = f"parts{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, prefix=f"p{uuid.uuid4().hex[:8]}", partitions=6)
    narrow = kafka.topic(topics.PURCHASES.name)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(narrow, num_partitions=2, replication_factor=1)])
        caplog.set_level(logging.WARNING, logger="postsale.runtime.service")
        await ensure_topics(kafka, service)
        wanted = {**{kafka.topic(t.name): 6 for t in topics.ALL}, narrow: 2, kafka.topic(dead_letter_topic(service)): 1}

        async def ours():
            # A topic just made reaches the metadata the brokers answer with a moment later.
            described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()
                         if t["topic"].startswith(f"{kafka.prefix}.")}
            return described if described.keys() == wanted.keys() else None

        described = await until(ours, timeout=15, what="every topic in the cluster's metadata")
    finally:
        await admin.close()
    assert described == wanted
    [warning] = [r.getMessage() for r in caplog.records if "partitions, fewer than" in r.getMessage()]
    assert warning.startswith(f"topic {narrow} has 2 partitions, fewer than the 6 asked for "
                              "(POSTSALE_KAFKA_PARTITIONS): a consumer group reads it with at most 2 replicas")
    assert warning.endswith(f"kafka-topics.sh --alter --topic {narrow} --partitions 6")
