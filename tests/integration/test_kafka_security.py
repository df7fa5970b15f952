"""Every Kafka client of a service on a broker that requires SASL (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512) or TLS with client certificates, and creates no topic on a client's request
(`secured_kafka.SecuredKafka`): with the right settings the admin client (topics), the
faststream broker (consumers and the dead-letter producer), the outbox relay, the lag monitor
and the dead-letter command all work; with wrong ones the broker refuses them, and an outbox
row waits, neither lost nor parked. With topic creation off, Postsale creates nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import ProductPublished, topics
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.messaging import OutboxMessage, OutboxRelay, Subscription, publish_later, subscribe
from postsale.runtime.messaging.consumer import LagMonitor, RetryPolicy
from postsale.runtime.messaging.deadletters import dead_letter_topic, list_dead_letters
from postsale.runtime.service import ensure_topics, make_broker
from postsale.runtime.settings import KafkaSettings
from tests.integration.secured_kafka import SecuredKafka

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory):
    cluster = SecuredKafka(tmp_path_factory.mktemp("secured-kafka"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class SecureEffect(SQLModel, table=True):
    __tablename__ = "test_secure_effects"
    id: int | None = Field(default=None, primary_key=True)
    product_id: str


def product(name: str) -> ProductPublished:
    return ProductPublished(product_id=f"prod_{name}", name=name, delivery_type="membership",
                            published_at=datetime.now(timezone.utc))


async def until(check, timeout: float = 30, what: str = "the condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def environment(kafka: KafkaSettings) -> dict[str, str]:
    """`kafka` as an operator writes it: the environment variables of the README's table."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
           "KAFKA_SASL_MECHANISM": kafka.sasl_mechanism, "POSTSALE_KAFKA_PREFIX": kafka.prefix}
    for name, value in (("KAFKA_SASL_USERNAME", kafka.sasl_username),
                        ("KAFKA_SASL_PASSWORD", kafka.sasl_password and kafka.sasl_password.get_secret_value()),
                        ("KAFKA_SSL_CAFILE", kafka.ssl_cafile), ("KAFKA_SSL_CERTFILE", kafka.ssl_certfile),
                        ("KAFKA_SSL_KEYFILE", kafka.ssl_keyfile)):
        if value:
            env[name] = str(value)
    return env


def queue(engine, event) -> str:
    with Session(engine) as session:
        event_id = publish_later(session, event, source="/tests")
        session.commit()
    return event_id


def outbox_row(engine, event_id: str) -> OutboxMessage:
    with Session(engine) as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.event_id == event_id)).one()


CLIENTS = [
    pytest.param("SASL_PLAINTEXT", {"sasl_mechanism": "PLAIN"}, id="sasl-plain"),
    pytest.param("SASL_PLAINTEXT", {"sasl_mechanism": "SCRAM-SHA-256"}, id="sasl-scram-sha-256"),
    pytest.param("SASL_SSL", {"sasl_mechanism": "SCRAM-SHA-512"}, id="sasl-ssl-scram-sha-512"),
    pytest.param("SSL", {}, id="mutual-tls"),
]


@pytest.mark.parametrize("listener,overrides", CLIENTS)
async def test_every_client_works_with_the_right_credentials(secured_kafka, listener, overrides, tmp_path):
    service = f"sec{uuid.uuid4().hex[:8]}"
    kafka = secured_kafka.settings(listener, prefix=f"p{uuid.uuid4().hex[:8]}", **overrides)
    engine = make_engine(f"sqlite:///{tmp_path / 'secure.db'}")
    create_tables(engine)

    def record(session: Session, event: ProductPublished, _event_id: str) -> None:
        if event.name == "poison":
            raise RuntimeError("this one fails")
        session.add(SecureEffect(product_id=event.product_id))

    def effects() -> list[str]:
        with Session(engine) as session:
            return [e.product_id for e in session.exec(select(SecureEffect)).all()]

    subscription = Subscription(service, topics.PRODUCTS.name, {ProductPublished: record},
                                retry=RetryPolicy(attempts=1))
    await ensure_topics(kafka, service)  # the admin client; the broker would create none by itself
    broker = make_broker(kafka, service)  # faststream: consumers, and the producer of dead letters
    subscribe(broker, engine, subscription, kafka)
    await broker.start()
    relay = OutboxRelay(engine, kafka)
    lag = LagMonitor(kafka, [kafka.group(subscription.group_id)])
    try:
        assert await broker.ping(timeout=5)
        good, poison = queue(engine, product("good")), queue(engine, product("poison"))
        assert await relay.publish_pending() == 2  # the relay's own producer
        assert outbox_row(engine, good).sent_at is not None and outbox_row(engine, poison).sent_at is not None
        await until(lambda: asyncio.sleep(0, result=effects() == ["prod_good"]), what="the good event handled")
        letters = await until(lambda: list_dead_letters(kafka, service), what="the poison dead-lettered")
        assert [(letter.original_topic, letter.error) for letter in letters] == [
            (kafka.topic(topics.PRODUCTS.name), "this one fails")]

        async def caught_up():
            lags = await lag.observe()
            return lags and all(value == 0 for value in lags.values())

        await until(caught_up, what="the group's lag measured at 0")
    finally:
        await relay.close()
        await lag.close()
        await broker.stop()
        engine.dispose()

    # The operator's command, configured as the services are: by the environment alone.
    listed = subprocess.run([sys.executable, "-m", "postsale.runtime.messaging.deadletters", "list", service,
                             "--database-url", f"sqlite:///{tmp_path / 'secure.db'}"],
                            env={**os.environ, **environment(kafka)}, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert f"1 dead letter(s) in {kafka.topic(dead_letter_topic(service))}" in listed.stdout


REFUSED = [
    pytest.param("SASL_PLAINTEXT", {"sasl_password": "wrong"}, "SaslAuthenticationFailed", id="plain-wrong-password"),
    pytest.param("SASL_PLAINTEXT", {"sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "mallory"},
                 "SaslAuthenticationFailed", id="scram-unknown-user"),
    pytest.param("SASL_SSL", {"sasl_mechanism": "SCRAM-SHA-512", "sasl_password": "wrong"},
                 "SaslAuthenticationFailed", id="sasl-ssl-wrong-password"),
    pytest.param("SSL", {"ssl_certfile": None, "ssl_keyfile": None}, "closed", id="tls-without-client-certificate"),
    pytest.param("SSL", {"ssl_cafile": "other"}, "CERTIFICATE_VERIFY_FAILED", id="tls-broker-not-trusted"),
]


@pytest.mark.parametrize("listener,overrides,reason", REFUSED)
async def test_wrong_credentials_are_refused_and_nothing_is_lost(secured_kafka, listener, overrides, reason,
                                                                 tmp_path, caplog):
    if overrides.get("ssl_cafile") == "other":
        overrides = {**overrides, "ssl_cafile": secured_kafka.certificates.other_ca}
    service = f"sec{uuid.uuid4().hex[:8]}"
    kafka = secured_kafka.settings(listener, **overrides)
    engine = make_engine(f"sqlite:///{tmp_path / 'refused.db'}")
    create_tables(engine)
    caplog.set_level(logging.ERROR, logger="aiokafka")

    with pytest.raises(KafkaConnectionError):
        await ensure_topics(kafka, service)
    broker = make_broker(kafka, service)
    subscribe(broker, engine, Subscription(service, topics.PRODUCTS.name, {ProductPublished: lambda *_: None}), kafka)
    with pytest.raises(KafkaConnectionError):
        await broker.start()
    await broker.stop()
    monitor = LagMonitor(kafka, ["any"])
    with pytest.raises(KafkaConnectionError):
        await monitor.observe()
    await monitor.close()
    event_id = queue(engine, product("waits"))
    relay = OutboxRelay(engine, kafka)
    with pytest.raises(KafkaConnectionError):
        await relay.publish_pending()
    await relay.close()
    row = outbox_row(engine, event_id)
    assert (row.sent_at, row.parked_at) == (None, None)  # waits for the settings to be fixed
    assert reason in caplog.text  # refused by the broker (or the TLS handshake), for that reason
    engine.dispose()


async def test_with_topic_creation_off_postsale_creates_no_topic_and_its_events_wait_for_one(secured_kafka,
                                                                                          tmp_path, caplog):
    """Where a platform team manages topics (and the cluster creates none on request, as this
    broker): the admin client, faststream and the relay create nothing; an event for a topic
    not made yet waits in the outbox, neither lost nor parked, until it exists, then goes out.
    (A subscriber's topic must exist before the service starts: faststream fails the start-up.)"""
    service = f"sec{uuid.uuid4().hex[:8]}"
    kafka = secured_kafka.settings("SASL_PLAINTEXT", prefix=f"p{uuid.uuid4().hex[:8]}", create_topics=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'managed.db'}")
    create_tables(engine)
    admin = AIOKafkaAdminClient(bootstrap_servers=secured_kafka.bootstrap_servers)  # the platform team's
    await admin.start()
    subscribed, published = kafka.topic(topics.PURCHASES.name), kafka.topic(topics.PRODUCTS.name)
    await admin.create_topics([NewTopic(subscribed, num_partitions=3, replication_factor=1)])
    caplog.set_level(logging.INFO, logger="postsale.runtime.service")
    await ensure_topics(kafka, service)
    [report] = [r.getMessage() for r in caplog.records if "these topics are missing" in r.getMessage()]
    missing = report.split(": ", 1)[1].split(", ")
    assert published in missing and kafka.topic(dead_letter_topic(service)) in missing
    assert subscribed not in missing
    broker = make_broker(kafka, service)
    subscribe(broker, engine, Subscription(service, topics.PURCHASES.name, {}), kafka)
    await broker.start()
    relay = asyncio.create_task(OutboxRelay(engine, kafka, poll_interval=0.2).run())
    try:
        event_id = queue(engine, product("managed"))
        await asyncio.sleep(5)  # the relay tries to send it
        row = outbox_row(engine, event_id)
        assert (row.sent_at, row.parked_at) == (None, None)
        assert [name for name in await admin.list_topics() if name.startswith(kafka.prefix)] == [subscribed]

        await admin.create_topics([NewTopic(published, num_partitions=3, replication_factor=1)])
        await until(lambda: asyncio.sleep(0, result=outbox_row(engine, event_id).sent_at is not None), timeout=60,
                    what="the waiting event published once its topic exists")
        assert outbox_row(engine, event_id).parked_at is None
        assert sorted(name for name in await admin.list_topics() if name.startswith(kafka.prefix)) == sorted(
            [subscribed, published])  # only the platform team's
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        await admin.close()
        await broker.stop()
        engine.dispose()
