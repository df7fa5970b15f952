"""Billing emails across the real broker, notifications' database and SMTP: a failed renewal that
checkout publishes reaches the customer's inbox once, with the link to the billing page."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from postsale.contracts import Event, Money, PaymentFailed, PurchaseCompleted, PurchasedProduct, encode
from tests.support import eventually

pytestmark = pytest.mark.e2e


async def publish(bootstrap: str, events: list[Event], *, times: int = 1) -> None:
    """Publishes hand-made events as checkout would, on each event's topic keyed by customer; each
    `times` times with the same event id, as a redelivery would bring it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            headers, value = encode(event, source="/tests")
            for _ in range(times):
                await producer.send_and_wait(event.topic, value, key=event.customer_id.encode(),
                                             headers=list(headers.items()))
    finally:
        await producer.stop()


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_a_failed_renewal_reaches_the_customer_once_with_the_link_to_update_the_card(
        suite, store, smtp_inbox, kafka_bootstrap):
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    email = f"{customer_id}@example.com"
    subscription_id, purchase_id = f"sub_{uuid.uuid4().hex[:12]}", f"pur_{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    await publish(kafka_bootstrap, [PurchaseCompleted(
        purchase_id=purchase_id, customer_id=customer_id, email=email, offer_id=store.offer_id,
        offer_name="Monthly Club",
        products=[PurchasedProduct(product_id=store.product_id, name=store.product_name, delivery_type="membership")],
        amount=Money(amount=1900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=now - timedelta(days=30), new_customer=True, subscription_id=subscription_id,
        next_payment_at=now)])
    # The purchase's own email says notifications knows the subscription's name.
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{purchase_id}", timeout=60)

    def failure(attempt: int) -> PaymentFailed:
        return PaymentFailed(
            subscription_id=subscription_id, billing="subscription", purchase_id=purchase_id, customer_id=customer_id,
            email=email, offer_id=store.offer_id, payment_id="att_1", kind="renewal",
            amount=Money(amount=1900, currency="EUR"), attempt=attempt,
            next_retry_at=now + timedelta(days=3 if attempt == 1 else 5), failure_message="Your card was declined.",
            failed_at=now + timedelta(days=attempt - 1))

    # The first attempt twice (a redelivery), then the next attempt, which marks that both were handled.
    await publish(kafka_bootstrap, [failure(1)], times=2)
    await publish(kafka_bootstrap, [failure(2)])

    key = f"payment-failed:{subscription_id}:att_1"
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"{key}:2", timeout=60)
    [message] = smtp_inbox.with_key(f"{key}:1")
    billing_page = f"{suite.url('checkout')}/billing"
    assert message["To"] == email
    assert message["Subject"] == "Your payment for Monthly Club did not go through"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "19.00 EUR" in text and "Your card was declined." in text and "We will try again on" in text
    assert billing_page in text
    assert f'href="{billing_page}"' in html and "Update your card" in html

    with suite.admin("notifications") as notifications:
        # Marked sent once the relay took it, a moment after the inbox had it.
        logged = eventually(lambda: (e := notifications.get(f"/admin/emails/{key}:1").json())["status"] == "sent" and e)
    assert (logged["to"], logged["template"]) == (email, "payment_failed")


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_the_running_service_sends_a_reminder_that_is_due(suite, store, smtp_inbox, kafka_bootstrap):
    # A trial that ends in two days is inside the three days' notice: its reminder is due at once,
    # so the service's own scheduler sends it without the test moving any clock.
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    subscription_id = f"sub_{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    await publish(kafka_bootstrap, [PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:12]}", customer_id=customer_id, email=f"{customer_id}@example.com",
        offer_id=store.offer_id, offer_name="Trial Club",
        products=[PurchasedProduct(product_id=store.product_id, name=store.product_name, delivery_type="membership")],
        amount=Money(amount=0, currency="EUR"), provider="none", provider_payment_id="", completed_at=now,
        new_customer=True, subscription_id=subscription_id, trial_ends_at=now + timedelta(days=2),
        next_payment_at=now + timedelta(days=2))])

    message = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"trial-ending:{subscription_id}", timeout=60)
    assert message["To"] == f"{customer_id}@example.com"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Your free trial of Trial Club ends on" in text and f"{suite.url('checkout')}/billing" in text
