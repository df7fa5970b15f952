"""A buyer who says no to an upsell and to its downsell: `UpsellDeclined` on the purchases topic, once
for each offer declined, whatever a second click or a stale tab sends. Real services and broker."""

from __future__ import annotations

import uuid

import httpx
import pytest

from postsale.contracts import UpsellDeclined, topics
from tests.support import create_offer, create_product, events_on_topic, pay, start_checkout

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_declining_an_upsell_and_its_downsell_is_published_once_each(suite, kafka_bootstrap):
    def offer(name: str, amount: int, **body) -> dict:
        product = create_product(suite, f"{name} {uuid.uuid4().hex[:6]}")
        return create_offer(suite, name=name, product_ids=[product], price={"amount": amount, "currency": "EUR"},
                            **body)

    coaching, replay = offer("Coaching", 9900), offer("Coaching replay", 2900)
    course = offer("Course", 4900, upsells=[{"offer_id": coaching["id"], "downsell_offer_id": replay["id"]}])
    email, browser = f"no-thanks-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, course["id"], email)
    assert pay(browser, suite, payment_url).status_code == 303

    for position, name in (("0:up", "Coaching"), ("0:down", "Coaching replay")):
        assert name in browser.get(f"{payment_url}/upsell").text
        for _ in range(2):  # the second click names a step the buyer has left: nothing more happens
            declined = browser.post(f"{payment_url}/upsell", data={"position": position, "decision": "decline"})
            assert declined.status_code == 303

    with suite.admin("checkout") as checkout:
        [purchase] = checkout.get("/admin/purchases", params={"email": email}).json()
    found = events_on_topic(kafka_bootstrap, topics.PURCHASES.name,
                            lambda e: isinstance(e, UpsellDeclined) and e.email == email, expect=2)
    assert [(e.offer_id, e.offer_name) for e in found] == [(coaching["id"], "Coaching"),
                                                           (replay["id"], "Coaching replay")]
    assert {(e.purchase_id, e.customer_id) for e in found} == {(purchase["id"], purchase["customer_id"])}
