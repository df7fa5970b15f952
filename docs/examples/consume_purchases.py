"""Subscribe to Postsale's purchases with confluent-kafka and the contracts package.

    pip install ./contracts confluent-kafka
    python docs/examples/consume_purchases.py --bootstrap-servers 127.0.0.1:9092 --group my-system
"""

from __future__ import annotations

import argparse
from typing import Callable

from confluent_kafka import Consumer, Message

from postsale.contracts import DecodeError, Event, PurchaseCompleted, PurchaseRefunded, UnknownEventType, decode, topics


def consume(bootstrap_servers: str, group_id: str, handle: Callable[[Event, Message], bool | None],
            idle_timeout: float | None = None) -> None:
    """Hands every purchases event (and its record) to `handle` until it returns True, or until
    nothing arrives for `idle_timeout` seconds."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        # Commit only after handling: a crash re-reads the event instead of losing it.
        "enable.auto.commit": False,
    })
    consumer.subscribe([topics.PURCHASES.name])
    try:
        while True:
            record = consumer.poll(idle_timeout if idle_timeout is not None else 1.0)
            if record is None:
                if idle_timeout is not None:
                    return
                continue
            if record.error():
                raise RuntimeError(record.error())
            try:
                event = decode(record.headers() or [], record.value())
            except UnknownEventType:
                event = None  # a type added after this code was written: skip it
            except DecodeError as error:
                print(f"not a Postsale event at offset {record.offset()}: {error}")
                event = None
            done = handle(event, record) if event is not None else None
            consumer.commit(record, asynchronous=False)
            if done:
                return
    finally:
        consumer.close()


def print_event(event: Event, _record: Message) -> None:
    if isinstance(event, PurchaseCompleted):
        products = ", ".join(p.name for p in event.products)
        print(f"{event.email} bought {event.offer_name} ({products}) for {event.amount.amount / 100:.2f} {event.amount.currency}")
    elif isinstance(event, PurchaseRefunded):
        print(f"purchase {event.purchase_id} refunded: {event.amount.amount / 100:.2f} {event.amount.currency}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--group", default="my-system")
    args = parser.parse_args()
    consume(args.bootstrap_servers, args.group, print_event)
