"""The local Kafka (postsale_local.kafka) is a real broker: idempotence, transactions, failover.

Uses the Kafka named by KAFKA_BOOTSTRAP_SERVERS when set; otherwise starts one from jars.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from postsale_local.kafka import KafkaCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def bootstrap(kafka_bootstrap: str) -> str:
    """The session's broker (see conftest.py): the one every integration test shares."""
    return kafka_bootstrap


def new_topic() -> str:
    # A fresh topic per test, so tests also pass against a shared external Kafka.
    return f"test-local-kafka-{uuid.uuid4().hex[:12]}"


async def read(bootstrap: str, topic: str, count: int, *, group_id: str | None = None,
               isolation_level: str = "read_uncommitted", timeout: float = 30) -> list[bytes]:
    """Read from the start of `topic` until `count` values arrived (or time ran out)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                                auto_offset_reset="earliest", isolation_level=isolation_level,
                                enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
        if group_id is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def test_idempotent_producer_round_trip(bootstrap: str) -> None:
    topic = new_topic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"m{n}".encode(), key=b"k")
    finally:
        await producer.stop()
    assert await read(bootstrap, topic, 5) == [f"m{n}".encode() for n in range(5)]


async def test_transactions_commit_and_abort(bootstrap: str) -> None:
    topic = new_topic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
            await producer.send_and_wait(topic, b"committed-2")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted-1")
        await producer.send_and_wait(topic, b"aborted-2")
        await producer.abort_transaction()
        # A committed message after the aborted ones: reading up to it proves the consumer went
        # past the aborted records rather than merely not having reached them yet.
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-3")
    finally:
        await producer.stop()

    committed = await read(bootstrap, topic, 3, isolation_level="read_committed")
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted records really are in the log; only read_committed hides them.
    everything = await read(bootstrap, topic, 5, isolation_level="read_uncommitted")
    assert b"aborted-1" in everything and b"aborted-2" in everything


async def test_restart_on_same_data_dir_keeps_data_and_ports(tmp_path) -> None:
    # What a developer's second `make run` relies on: same bootstrap address, topics still there.
    topic = new_topic()
    cluster = KafkaCluster(tmp_path / "kafka", nodes=1)
    await asyncio.to_thread(cluster.start)
    try:
        servers = cluster.bootstrap_servers
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"kept")
        finally:
            await producer.stop()
    finally:
        await asyncio.to_thread(cluster.stop)

    again = KafkaCluster(tmp_path / "kafka", nodes=1)
    await asyncio.to_thread(again.start)
    try:
        assert again.bootstrap_servers == servers
        assert await read(servers, topic, 1) == [b"kept"]
    finally:
        await asyncio.to_thread(again.stop)


@pytest.mark.fault
async def test_three_nodes_survive_one_node_down(tmp_path) -> None:
    cluster = KafkaCluster(tmp_path / "kafka3", nodes=3)
    await asyncio.to_thread(cluster.start)
    try:
        servers, topic, group = cluster.bootstrap_servers, new_topic(), f"g-{uuid.uuid4().hex[:8]}"
        producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            async def produce(prefix: str) -> list[bytes]:
                values = [f"{prefix}-{n}".encode() for n in range(10)]
                for value in values:
                    await producer.send_and_wait(topic, value)
                return values

            # All three up: this also creates the topic and __consumer_offsets with 3 replicas.
            first = await produce("before")
            assert await read(servers, topic, 10, group_id=group) == first

            # Stop the node leading the topic's partition, so leadership has to move.
            leader = producer.client.cluster.leader_for_partition(TopicPartition(topic, 0))
            await asyncio.to_thread(cluster.stop_node, leader)
            assert cluster.running_nodes() == sorted({0, 1, 2} - {leader})
            # acks=all still succeeds: 2 in-sync replicas meet min.insync.replicas=2.
            during = await produce("during")
            assert await read(servers, topic, 10, group_id=group) == during

            await asyncio.to_thread(cluster.start_node, leader)
            after = await produce("after")
            assert await read(servers, topic, 10, group_id=group) == after
        finally:
            await producer.stop()
        assert await read(servers, topic, 30) == first + during + after
    finally:
        await asyncio.to_thread(cluster.stop)
