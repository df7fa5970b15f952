"""List and replay a service's dead letters; list and release its parked outbox rows.

    python -m postsale.runtime.messaging.deadletters list entitlements
    python -m postsale.runtime.messaging.deadletters replay entitlements
    python -m postsale.runtime.messaging.deadletters release entitlements 12 13   (or --all)

Replaying republishes each dead record, unchanged (same key, value and headers, so the same
CloudEvents id), to the topic it came from. That is safe for every consumer of the topic:
each one has handled the id already (its inbox skips it) or never could (and handles it
now). Replay remembers how far it got in its own consumer group, so running it again
replays only newer dead letters.

A parked row is an outbox row the broker refused for a reason retrying cannot fix (too
large, invalid topic, not authorised); `list` shows them beside the dead letters, read from
the service's database (`<SERVICE>_DATABASE_URL`, as the service reads it). `release` puts
them back in the queue once the cause is fixed; the running service's relay publishes them.

Kafka is reached as the services reach it (`KAFKA_*`: servers, TLS, SASL) and the topic and
groups carry the installation's prefix (`POSTSALE_KAFKA_PREFIX`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.outbox import parked_messages, release_parked
from postsale.runtime.settings import KafkaSettings, kafka_settings

DLQ_HEADER_PREFIX = "dlq_"
ORIGINAL_HEADERS_HEADER = "dlq_original_headers"
VALUE_OMITTED_HEADER = "dlq_value_omitted"


def dead_letter_topic(service: str) -> str:
    """The service's dead-letter topic, as contracts name topics (the relay and consumers add the
    installation's prefix on the cluster)."""
    return f"{service}.dead-letters"


def dead_letter_headers(record, *, consumer: str, error: BaseException, attempts: int) -> dict[str, str]:
    """The failed record's own headers, with where it came from and why it failed added.

    The original headers also travel exactly (bytes, order, repeats) in `dlq_original_headers`,
    since the text copies beside it cannot carry every byte and the publisher adds its own."""
    raw = list(record.headers or ())
    original = {name: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                for name, value in raw}
    return {
        **original,
        "dlq_original_topic": record.topic,
        "dlq_original_partition": str(record.partition),
        "dlq_original_offset": str(record.offset),
        "dlq_original_timestamp": str(record.timestamp),
        ORIGINAL_HEADERS_HEADER: json.dumps(
            [[name, base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()]
             for name, value in raw]),
        "dlq_consumer": consumer,
        "dlq_error_type": type(error).__name__,
        "dlq_error": str(error)[:4000],
        "dlq_attempts": str(attempts),
        "dlq_failed_at": utcnow().isoformat(),
    }


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    original_topic: str
    original_partition: int
    original_offset: int
    consumer: str
    error_type: str
    error: str
    attempts: int
    failed_at: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def _meta(self) -> dict[str, str]:
        return {name: value.decode(errors="replace") for name, value in self.headers if name.startswith(DLQ_HEADER_PREFIX)}

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        exact = self._meta.get(ORIGINAL_HEADERS_HEADER)
        if exact is not None:
            return [(name, base64.b64decode(value)) for name, value in json.loads(exact)]
        # Written before the exact copy existed: the text copies, less the dead-letter headers.
        return [(name, value) for name, value in self.headers if not name.startswith(DLQ_HEADER_PREFIX)]

    @property
    def value_omitted(self) -> bool:
        """Too large to dead-letter whole: the value is read from its original offset on replay."""
        return VALUE_OMITTED_HEADER in self._meta

    @property
    def event_type(self) -> str:
        return dict(self.original_headers).get("ce_type", b"?").decode(errors="replace")


def _dead_letter(record) -> DeadLetter:
    headers = list(record.headers or ())
    meta = {name: value.decode(errors="replace") for name, value in headers if name.startswith(DLQ_HEADER_PREFIX)}
    return DeadLetter(
        offset=record.offset, original_topic=meta.get("dlq_original_topic", ""),
        original_partition=int(meta.get("dlq_original_partition", -1)),
        original_offset=int(meta.get("dlq_original_offset", -1)), error_type=meta.get("dlq_error_type", ""),
        error=meta.get("dlq_error", ""), attempts=int(meta.get("dlq_attempts", 0)),
        failed_at=meta.get("dlq_failed_at", ""), consumer=meta.get("dlq_consumer", ""), key=record.key,
        value=record.value, headers=headers,
    )


async def _read_to_end(kafka: KafkaSettings, topic: str, group_id: str | None) -> tuple[list, AIOKafkaConsumer]:
    """Every record of `topic` from the group's committed position (or the start) up to its end now.

    Returns the consumer still open, so that the caller can commit once it has acted."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    try:
        await consumer.start()  # inside: a broker that cannot be reached still gets its client closed
        # The consumer's own metadata must know the topic's partitions before `assign`; its public
        # `topics()` fetches them into a separate object, so refresh the client's metadata itself.
        await consumer._client.force_metadata_update()  # noqa: SLF001
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions) if partitions else {}
        records = []
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records, consumer
    except BaseException:
        await consumer.stop()
        raise


async def _original_value(kafka: KafkaSettings, letter: DeadLetter) -> bytes | None:
    """The value of the record a dead letter stands for, read at its original offset."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(letter.original_topic, letter.original_partition)
        consumer.assign([tp])
        consumer.seek(tp, letter.original_offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout=30)
        if record.offset != letter.original_offset:
            raise LookupError(f"{letter.original_topic}[{letter.original_partition}]@{letter.original_offset} "
                              "is gone (retention)")
        return record.value
    finally:
        await consumer.stop()


async def list_dead_letters(kafka: KafkaSettings | str | None, service: str) -> list[DeadLetter]:
    kafka = kafka_settings(kafka)
    records, consumer = await _read_to_end(kafka, kafka.topic(dead_letter_topic(service)), group_id=None)
    await consumer.stop()
    return [_dead_letter(record) for record in records]


async def replay_dead_letters(kafka: KafkaSettings | str | None, service: str) -> list[DeadLetter]:
    """Republishes every dead letter not replayed before; returns them. Each goes back to the
    topic it came from, as named on the cluster (prefix included)."""
    kafka = kafka_settings(kafka)
    records, consumer = await _read_to_end(kafka, kafka.topic(dead_letter_topic(service)),
                                           group_id=kafka.group(f"postsale-{service}-replay"))
    producer = AIOKafkaProducer(**kafka.client_kwargs(), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        letters = [_dead_letter(record) for record in records]
        for letter in letters:
            value = await _original_value(kafka, letter) if letter.value_omitted else letter.value
            await producer.send_and_wait(letter.original_topic, value, key=letter.key,
                                         headers=letter.original_headers)
        if records:
            # Only after every replayed record was acknowledged by the broker.
            await consumer.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records})
        return letters
    finally:
        await producer.stop()
        await consumer.stop()


def database_url(service: str) -> str:
    """The service's database, named as the service itself reads it."""
    return os.environ.get(f"{service.upper()}_DATABASE_URL", f"sqlite:///.data/{service}.db")


def _with_engine(url: str, work):
    engine = make_engine(url)
    try:
        return work(engine)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postsale.runtime.messaging.deadletters",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "replay", "release"])
    parser.add_argument("service", help="checkout, entitlements, accounts or notifications")
    parser.add_argument("ids", nargs="*", type=int, help="release: the parked outbox rows to re-queue")
    parser.add_argument("--all", action="store_true", help="release: every parked outbox row")
    parser.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS; the other KAFKA_* and "
                                                    "POSTSALE_KAFKA_PREFIX settings are read as the services read them")
    parser.add_argument("--database-url", help="default: $<SERVICE>_DATABASE_URL, else sqlite:///.data/<service>.db")
    args = parser.parse_args(argv)
    url = args.database_url or database_url(args.service)
    if args.command in ("list", "replay"):
        kafka = kafka_settings(args.bootstrap_servers)
    if args.command == "list":
        letters = asyncio.run(list_dead_letters(kafka, args.service))
        for letter in letters:
            omitted = " (value omitted: too large)" if letter.value_omitted else ""
            print(f"#{letter.offset} {letter.failed_at} {letter.event_type} from {letter.original_topic}"
                  f"[{letter.original_partition}]@{letter.original_offset} after {letter.attempts} attempt(s): "
                  f"{letter.error_type}: {letter.error}{omitted}")
        print(f"{len(letters)} dead letter(s) in {kafka.topic(dead_letter_topic(args.service))}")
        parked = _with_engine(url, parked_messages)
        for row in parked:
            event_type = json.loads(row.headers).get("ce_type", "?")
            print(f"outbox #{row.id} {row.parked_at} {event_type} to {row.topic} ({len(row.value)} bytes, "
                  f"event {row.event_id}) after {row.attempts} attempt(s): {row.last_error}")
        print(f"{len(parked)} parked outbox row(s) in the {args.service} database")
    elif args.command == "replay":
        letters = asyncio.run(replay_dead_letters(kafka, args.service))
        print(f"replayed {len(letters)} dead letter(s) from {kafka.topic(dead_letter_topic(args.service))}")
    else:
        if not args.ids and not args.all:
            parser.error("release needs the ids of parked outbox rows, or --all")
        released = _with_engine(url, lambda engine: release_parked(engine, None if args.all else args.ids))
        print(f"released {len(released)} parked outbox row(s) {released}; the relay publishes them next")
    return 0


if __name__ == "__main__":
    sys.exit(main())
