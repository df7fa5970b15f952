"""What the email tests share: events published as their owning service publishes them, and a
customer of their own."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiokafka import AIOKafkaProducer

from postsale.contracts import Event, Money, PurchaseCompleted, PurchasedProduct, encode


async def publish(bootstrap: str, *events: Event) -> None:
    """Publishes events on each one's topic, keyed as its publisher keys it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            headers, value = encode(event, source="/tests")
            await producer.send_and_wait(event.topic, value, key=event.key().encode(), headers=list(headers.items()))
    finally:
        await producer.stop()


def new_customer() -> tuple[str, str]:
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    return customer_id, f"{customer_id}@example.com"


def purchase(customer_id: str, email: str, *, offer_id: str, products: list[tuple[str, str]], at: datetime,
             offer_name: str = "The Course", **fields) -> PurchaseCompleted:
    """A one-time purchase as checkout publishes it."""
    return PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:12]}", customer_id=customer_id, email=email, offer_id=offer_id,
        offer_name=offer_name,
        products=[PurchasedProduct(product_id=p, name=n, delivery_type="membership") for p, n in products],
        amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=at, new_customer=False, **fields)
