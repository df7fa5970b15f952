"""A paused billing's card check warns of nothing (a paused billing charges nothing); resuming it
looks at the card again, so a card that ends before the next payment is still warned about.
Sandbox, lifecycle simulator's clock, real services, broker and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.test_card_expiry import advance, buy, card_ends, card_of, month_after, warnings
from tests.support import create_offer, create_product, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]


def test_a_resumed_subscription_is_warned_about_a_card_that_ends_before_its_next_payment(suite, kafka_bootstrap):
    offer = create_offer(suite, name="Club", product_ids=[create_product(suite, f"Club {uuid.uuid4().hex[:6]}")],
                         price={"amount": 1900, "currency": "EUR"}, billing={"type": "subscription", "interval": "month"})
    now = datetime.now(timezone.utc)
    soon = month_after(now, 62)
    warn_day = card_ends(*soon) - timedelta(days=30)
    _, purchase = buy(suite, offer, soon)
    sub_id, customer = purchase["subscription_id"], purchase["customer_id"]
    assert eventually(lambda: card_of(suite, sub_id))  # the card was read: its check waits for the warning day

    with suite.admin("checkout") as checkout:
        assert checkout.post(f"/admin/subscriptions/{sub_id}/pause").json()["status"] == "paused"
    # Past the warning day while paused: the check runs, and warns of nothing.
    resumed_at = datetime.fromisoformat(advance(suite, customer, (warn_day - now) // timedelta(days=1) + 2)["now"])
    assert resumed_at > warn_day
    assert warnings(kafka_bootstrap, {sub_id}, expect=0) == []

    with suite.admin("checkout") as checkout:
        resumed = checkout.post(f"/admin/subscriptions/{sub_id}/resume").json()
    assert resumed["status"] == "active"
    assert datetime.fromisoformat(resumed["next_charge_at"]) > card_ends(*soon)  # a payment the card would fail
    advance(suite, customer, 1)
    [warning] = warnings(kafka_bootstrap, {sub_id}, expect=1)
    assert (warning.card_exp_month, warning.card_exp_year) == soon
    assert resumed_at <= warning.noticed_at < resumed_at + timedelta(days=1)
    assert warning.next_payment_at == datetime.fromisoformat(resumed["next_charge_at"])
