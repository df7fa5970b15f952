"""Nothing twice, nothing lost: redelivered events, bad messages and provider webhooks."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from postsale.contracts import AccessGranted, Money, PurchaseCompleted, PurchasedProduct, decode, encode, topics
from tests.support import eventually

pytestmark = pytest.mark.e2e


def purchase_of(store, customer_id: str) -> PurchaseCompleted:
    return PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:16]}", customer_id=customer_id,
        email=f"{customer_id}@example.com", offer_id=store.offer_id, offer_name="Test offer",
        products=[PurchasedProduct(product_id=store.product_id, name=store.product_name, delivery_type="membership")],
        amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=datetime.now(timezone.utc), new_customer=True,
    )


async def produce(bootstrap: str, records: list[tuple[bytes, dict[str, bytes], bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, headers, value in records:
            await producer.send_and_wait(topics.PURCHASES.name, value, key=key, headers=list(headers.items()))
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, until: Callable[[ConsumerRecord], bool],
                     timeout: float = 30) -> list[ConsumerRecord]:
    """Every record of `topic` from the start up to the first one `until` accepts."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    seen.append(record)
                    if until(record):
                        return seen
    finally:
        await consumer.stop()
    raise AssertionError(f"no matching record on {topic} within {timeout}s ({len(seen)} read)")


def ledger(suite, customer_id: str) -> list[dict]:
    with suite.admin("entitlements") as client:
        return client.get(f"/admin/access/customers/{customer_id}/ledger").json()


async def test_same_purchase_delivered_twice_grants_once_and_emails_once(suite, store, smtp_inbox, kafka_bootstrap):
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    purchase = purchase_of(store, customer_id)
    headers, value = encode(purchase, source="/tests")
    trace_id = uuid.uuid4().hex
    headers["ce_traceparent"] = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode()
    # A later purchase on the same key (so the same partition) marks when both copies were handled.
    sentinel = purchase_of(store, customer_id)
    sentinel_headers, sentinel_value = encode(sentinel, source="/tests")
    key = customer_id.encode()
    await produce(kafka_bootstrap, [(key, headers, value), (key, headers, value), (key, sentinel_headers, sentinel_value)])

    entries = eventually(lambda: len(entries := ledger(suite, customer_id)) >= 2 and entries)
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{sentinel.purchase_id}")

    assert [e["purchase_id"] for e in entries] == [purchase.purchase_id, sentinel.purchase_id]
    assert len(smtp_inbox.with_key(f"purchase-confirmation:{purchase.purchase_id}")) == 1
    granted = await read_topic(kafka_bootstrap, topics.ACCESS.name,
                               lambda r: r.key == key and decode(r.headers, r.value).purchase_id == sentinel.purchase_id)
    access_events = [decode(r.headers, r.value) for r in granted if r.key == key]
    # The grant continues the trace of the purchase that caused it.
    first_grant_headers = dict(next(r for r in granted if r.key == key).headers)
    assert first_grant_headers["ce_traceparent"].decode().split("-")[1] == trace_id
    assert [(type(e), e.purchase_id, e.reason, e.actor) for e in access_events] == [
        (AccessGranted, purchase.purchase_id, "purchase", "customer"),
        (AccessGranted, sentinel.purchase_id, "purchase", "customer"),
    ]


async def test_malformed_message_goes_to_dead_letters_and_the_partition_moves_on(suite, store, kafka_bootstrap):
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    key = customer_id.encode()
    garbage = b"{not json at all" + uuid.uuid4().hex.encode()
    bad_headers = {"ce_id": uuid.uuid4().hex.encode(), "ce_type": b"postsale.purchase.completed",
                   "ce_source": b"/tests", "ce_specversion": b"1.0", "content-type": b"application/json"}
    good = purchase_of(store, customer_id)
    good_headers, good_value = encode(good, source="/tests")
    await produce(kafka_bootstrap, [(key, bad_headers, garbage), (key, {}, b"no headers at all"),
                                    (key, good_headers, good_value)])

    entries = eventually(lambda: ledger(suite, customer_id))
    assert entries[0]["purchase_id"] == good.purchase_id

    records = await read_topic(kafka_bootstrap, "entitlements.dead-letters", lambda r: r.value == garbage)
    found = records[-1]
    dead_headers = {name: value.decode() for name, value in found.headers}
    assert dead_headers["dlq_original_topic"] == topics.PURCHASES.name
    assert dead_headers["dlq_error_type"] == "DecodeError"
    assert "invalid postsale.purchase.completed payload" in dead_headers["dlq_error"]
    assert found.key == key
