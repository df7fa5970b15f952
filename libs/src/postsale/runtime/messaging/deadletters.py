"""List and replay a service's dead letters.

    python -m postsale.runtime.messaging.deadletters list entitlements
    python -m postsale.runtime.messaging.deadletters replay entitlements

Replaying republishes each dead record, unchanged (same key, value and CloudEvents id), to
the topic it came from. That is safe for every consumer of the topic: each one has handled
the id already (its inbox skips it) or never could (and handles it now). Replay remembers how
far it got in its own consumer group, so running it again replays only newer dead letters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from postsale.runtime.clock import utcnow

DLQ_HEADER_PREFIX = "dlq_"


def dead_letter_topic(service: str) -> str:
    return f"{service}.dead-letters"


def dead_letter_headers(record, *, consumer: str, error: BaseException, attempts: int) -> dict[str, str]:
    """The failed record's own headers, with where it came from and why it failed added."""
    original = {name: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                for name, value in (record.headers or ())}
    return {
        **original,
        "dlq_original_topic": record.topic,
        "dlq_original_partition": str(record.partition),
        "dlq_original_offset": str(record.offset),
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
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, value) for name, value in self.headers if not name.startswith(DLQ_HEADER_PREFIX)]

    @property
    def event_type(self) -> str:
        return dict(self.headers).get("ce_type", b"?").decode(errors="replace")


def _dead_letter(record) -> DeadLetter:
    headers = list(record.headers or ())
    meta = {name: value.decode(errors="replace") for name, value in headers if name.startswith(DLQ_HEADER_PREFIX)}
    return DeadLetter(
        offset=record.offset, original_topic=meta.get("dlq_original_topic", ""),
        original_partition=int(meta.get("dlq_original_partition", -1)),
        original_offset=int(meta.get("dlq_original_offset", -1)), error_type=meta.get("dlq_error_type", ""),
        error=meta.get("dlq_error", ""), attempts=int(meta.get("dlq_attempts", 0)),
        failed_at=meta.get("dlq_failed_at", ""), consumer=meta.get("dlq_consumer", ""), key=record.key, value=record.value or b"", headers=headers,
    )


async def _read_to_end(bootstrap_servers: str, topic: str, group_id: str | None) -> tuple[list, AIOKafkaConsumer]:
    """Every record of `topic` from the group's committed position (or the start) up to its end now.

    Returns the consumer still open, so that the caller can commit once it has acted."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
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


async def list_dead_letters(bootstrap_servers: str, service: str) -> list[DeadLetter]:
    records, consumer = await _read_to_end(bootstrap_servers, dead_letter_topic(service), group_id=None)
    await consumer.stop()
    return [_dead_letter(record) for record in records]


async def replay_dead_letters(bootstrap_servers: str, service: str) -> list[DeadLetter]:
    """Republishes every dead letter not replayed before; returns them."""
    records, consumer = await _read_to_end(bootstrap_servers, dead_letter_topic(service),
                                           group_id=f"postsale-{service}-replay")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        letters = [_dead_letter(record) for record in records]
        for letter in letters:
            await producer.send_and_wait(letter.original_topic, letter.value, key=letter.key,
                                         headers=letter.original_headers)
        if records:
            # Only after every replayed record was acknowledged by the broker.
            await consumer.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records})
        return letters
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postsale.runtime.messaging.deadletters",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("service", help="checkout, entitlements, accounts or notifications")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args(argv)
    if args.command == "list":
        letters = asyncio.run(list_dead_letters(args.bootstrap_servers, args.service))
        for letter in letters:
            print(f"#{letter.offset} {letter.failed_at} {letter.event_type} from {letter.original_topic}"
                  f"[{letter.original_partition}]@{letter.original_offset} after {letter.attempts} attempt(s): "
                  f"{letter.error_type}: {letter.error}")
        print(f"{len(letters)} dead letter(s) in {dead_letter_topic(args.service)}")
    else:
        letters = asyncio.run(replay_dead_letters(args.bootstrap_servers, args.service))
        print(f"replayed {len(letters)} dead letter(s) from {dead_letter_topic(args.service)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
