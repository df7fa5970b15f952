"""Stripe's webhooks come late and more than once: one about a renewal period the subscription has
already left behind cannot undo the newer state. A store on Stripe (stripe-mock), signed webhooks,
the lifecycle simulator's clock."""

from __future__ import annotations

import uuid

import pytest

from postsale.contracts import PurchaseCompleted, topics
from tests.e2e.test_stripe_checkout import bought_through_stripe, purchases, webhook
from tests.support import create_offer, create_product, eventually, events_on_topic, send_stripe_event

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["stripe"], indirect=True)]


def has_access(suite, customer_id: str, product_id: str) -> bool:
    with suite.admin("entitlements") as entitlements:
        return entitlements.get("/admin/access", params={"customer_id": customer_id,
                                                         "product_id": product_id}).json()["has_access"]


def test_a_webhook_for_a_period_already_advanced_changes_nothing(suite, stripe_test_mode, kafka_bootstrap):
    club = create_product(suite, f"Club {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 1900, "currency": "EUR"},
                         billing={"type": "subscription", "interval": "month"})
    purchase = bought_through_stripe(suite, offer, charged=1900)
    customer, sub = purchase["customer_id"], f"/admin/subscriptions/{purchase['subscription_id']}"
    with suite.admin("checkout") as checkout:
        for _ in range(2):  # two renewals
            moved = checkout.post("/admin/sandbox/clock", json={"customer_id": customer, "advance_days": 31})
            assert moved.status_code == 200, moved.text
        before = checkout.get(sub).json()
        assert before["status"] == "active" and [p["kind"] for p in before["payments"]] == [
            "first payment", "renewal", "renewal"]
        first_payment, first_renewal = (p["provider_payment_id"] for p in before["payments"][:2])
        # The card renewals charge, read from Stripe's PaymentMethod, is there for the seller.
        card = eventually(lambda: checkout.get(sub).json()["card"])
        assert card["last4"].isdigit() and 1 <= card["exp_month"] <= 12

        # Stripe reports the first renewal's payment again, late, twice with one id and once with
        # another; then, out of order, a failure of it; and the first payment once more.
        renewal = stripe_test_mode.intent(first_renewal)
        assert renewal["metadata"]["postsale_checkout_session"]
        event_id = f"evt_{uuid.uuid4().hex}"
        answers = [send_stripe_event(suite, "payment_intent.succeeded", renewal, event_id=event_id) for _ in range(2)]
        assert [a.json()["status"] for a in answers] == ["accepted", "duplicate"]
        assert send_stripe_event(suite, "payment_intent.succeeded", renewal).json()["status"] == "accepted"
        failed = {**renewal, "status": "requires_payment_method",
                  "last_payment_error": {"message": "Your card was declined."}}
        assert send_stripe_event(suite, "payment_intent.payment_failed", failed).json()["status"] == "accepted"
        checkout_id = renewal["metadata"]["postsale_checkout_session"]
        assert webhook(suite, checkout_id, first_payment, amount=1900).json()["status"] == "accepted"

        after = checkout.get(sub).json()
    for field in ("status", "current_period_start", "current_period_end", "next_charge_at", "payments", "dunning"):
        assert after[field] == before[field], field
    assert len(purchases(suite, purchase["email"])) == 1
    assert eventually(lambda: has_access(suite, customer, club))
    # The purchase was published once, whatever came back from Stripe.
    published = events_on_topic(kafka_bootstrap, topics.PURCHASES.name,
                                lambda e: isinstance(e, PurchaseCompleted) and e.customer_id == customer, expect=1)
    assert [e.purchase_id for e in published] == [purchase["id"]]
