"""Checkout follows accounts' customers across the real broker: the offers a seller grants to a
customer added by hand become purchases without payment that the library shows, once; a changed
email makes the new address the returning customer's and the old one no one's."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from postsale.contracts import CustomerRegistered, PurchaseCompleted, encode, topics
from tests.support import (create_offer, create_product, eventually, events_on_topic, form_field, pay,
                           set_up_account, start_checkout)

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def link_in(message, pattern: str) -> str:
    return re.search(pattern, message.get_body(preferencelist=("plain",)).get_content()).group(1)


def purchases(suite, email: str) -> list[dict]:
    with suite.admin("checkout") as checkout:
        return checkout.get("/admin/purchases", params={"email": email}).json()


async def publish_again(bootstrap: str, event: CustomerRegistered) -> None:
    """The same event once more under a new event id, as a producer that retried after a lost ack
    would send it: the consumer's inbox does not know it, the database's constraints must."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        headers, value = encode(event, source="/postsale/accounts")
        await producer.send_and_wait(event.topic, value, key=event.customer_id.encode(), headers=list(headers.items()))
    finally:
        await producer.stop()


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_offers_granted_to_a_customer_added_by_hand_are_in_the_library_once(suite, smtp_inbox,
                                                                                  kafka_bootstrap):
    name = f"Handbook {uuid.uuid4().hex[:6]}"
    offer = create_offer(suite, name="Handbook", product_ids=[create_product(suite, name)])
    email = f"granted-{uuid.uuid4().hex[:8]}@example.com"
    with suite.admin("accounts") as accounts:
        added = accounts.post("/admin/customers", json={"email": email, "first_name": "Ida", "last_name": "Berg",
                                                        "offer_ids": [offer["id"], "offer_unknown"]})
    assert added.status_code == 201, added.text
    customer_id = added.json()["id"]

    [purchase] = eventually(lambda: purchases(suite, email), timeout=60)
    assert (purchase["offer_id"], purchase["price"], purchase["provider"]) == (
        offer["id"], {"amount": 0, "currency": "EUR"}, "none")

    # A redelivery of the seller's event grants nothing twice.
    [registered] = events_on_topic(kafka_bootstrap, topics.CUSTOMERS.name,
                                   lambda e: isinstance(e, CustomerRegistered) and e.customer_id == customer_id)
    await publish_again(kafka_bootstrap, registered)
    [published] = events_on_topic(kafka_bootstrap, topics.PURCHASES.name,
                                  lambda e: isinstance(e, PurchaseCompleted) and e.customer_id == customer_id,
                                  settle=8)
    assert (published.amount.amount, published.provider, published.new_customer,
            published.send_account_setup_email, published.account_setup_token_sha256) == (0, "none", False, False, None)
    assert len(purchases(suite, email)) == 1

    # The customer sets up the account from the welcome email, and the library shows the offer's product.
    welcome = smtp_inbox.wait_for(lambda m: m["To"] == email, timeout=60)
    browser = httpx.Client(timeout=10)
    page = browser.get(link_in(welcome, r"(http\S+/setup\?token=\S+)"))
    created = browser.post(f"{suite.url('accounts')}/setup", data={
        "token": form_field(page.text, "token"), "csrf_token": form_field(page.text, "csrf_token"),
        "first_name": "Ida", "last_name": "Berg", "password": PASSWORD, "password_repeat": PASSWORD})
    assert created.status_code == 303
    library = eventually(lambda: (p := browser.get(f"{suite.url('entitlements')}/library")).status_code == 200
                         and name in p.text and p)
    assert name in library.text
    # One email only: the seller's welcome; no second setup link, no confirmation of a purchase not made.
    assert [m["Subject"] for m in smtp_inbox.messages if m["To"] == email] == ["Welcome! Your login details"]


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_after_an_email_change_the_new_address_is_the_returning_customer(suite, smtp_inbox):
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"Course {uuid.uuid4().hex[:6]}")])
    old, new = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("old", "new"))
    browser = httpx.Client(timeout=10)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], old))
    assert set_up_account(browser, suite, paid.headers["location"], password=PASSWORD).status_code == 303

    account = browser.get(f"{suite.url('accounts')}/account")
    asked = browser.post(f"{suite.url('accounts')}/account/email", data={
        "new_email": new, "current_password": PASSWORD, "csrf_token": form_field(account.text, "csrf_token")})
    assert asked.status_code == 200, asked.text
    confirm = smtp_inbox.wait_for(lambda m: m["To"] == new, timeout=60)
    page = browser.get(link_in(confirm, r"(http\S+/account/email/confirm\?token=\S+)"))
    confirmed = browser.post(f"{suite.url('accounts')}/account/email/confirm", data={
        "token": form_field(page.text, "token"), "csrf_token": form_field(page.text, "csrf_token")})
    assert confirmed.status_code == 303, confirmed.text

    # The purchase moved with the customer; a buyer giving the new address is asked to log in first.
    [moved] = eventually(lambda: purchases(suite, new), timeout=60)
    assert purchases(suite, old) == []
    stranger = httpx.Client(timeout=10)
    returning = stranger.get(start_checkout(stranger, suite, offer["id"], new))
    assert returning.status_code == 303 and "/login" in returning.headers["location"]
    # The old address is no one's now: a buyer giving it pays as a new customer.
    fresh = stranger.get(start_checkout(stranger, suite, offer["id"], old))
    assert fresh.status_code == 200 and 'name="card_number"' in fresh.text
    assert moved["email"] == new
