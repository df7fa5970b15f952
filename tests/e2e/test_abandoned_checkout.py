"""Abandoned checkouts across the real services and broker: a buyer who gave an email and did not pay
within the store's recovery delay is published once as `CheckoutAbandoned`, with the offer's switch
and a link back to the checkout with the email filled in; a buyer who paid never is."""

from __future__ import annotations

import html
import uuid
from contextlib import contextmanager

import httpx
import pytest

from postsale.contracts import CheckoutAbandoned, topics
from tests.support import (create_offer, create_product, events_on_topic, on_stripe, pay, start_checkout,
                           start_stripe_payment)

pytestmark = pytest.mark.e2e


@contextmanager
def recovery_delay(suite, minutes: int):
    """The store's recovery delay for the checkouts started inside; Postsale's default (60) after."""
    with suite.admin("checkout") as checkout:
        assert checkout.put("/admin/checkout-settings", json={"recovery_delay_minutes": 0}).status_code == 422
        changed = checkout.put("/admin/checkout-settings", json={"recovery_delay_minutes": minutes})
        assert changed.status_code == 200 and checkout.get("/admin/checkout-settings").json() == {
            "recovery_delay_minutes": minutes}
        try:
            yield
        finally:
            checkout.put("/admin/checkout-settings", json={"recovery_delay_minutes": 60})


def abandoned(kafka_bootstrap: str, emails: set[str], *, expect: int) -> list[CheckoutAbandoned]:
    return events_on_topic(kafka_bootstrap, topics.CHECKOUTS.name,
                           lambda e: isinstance(e, CheckoutAbandoned) and e.email in emails, expect=expect,
                           timeout=150, settle=8)


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_an_unpaid_checkout_is_abandoned_once_and_a_paid_one_never(suite, kafka_bootstrap, smtp_inbox):
    product = create_product(suite, f"Course {uuid.uuid4().hex[:6]}")
    reminded = create_offer(suite, name="Course", product_ids=[product])
    quiet = create_offer(suite, name="Quiet course", product_ids=[product], send_recovery_email=False)
    assert (reminded["send_recovery_email"], quiet["send_recovery_email"]) == (True, False)
    left, paid, left_quiet = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("left", "paid", "quiet"))
    with recovery_delay(suite, 1):
        browser = httpx.Client(timeout=10)
        start_checkout(browser, suite, reminded["id"], left)
        start_checkout(browser, suite, quiet["id"], left_quiet)
        assert pay(browser, suite, start_checkout(browser, suite, reminded["id"], paid)).status_code == 303
        found = abandoned(kafka_bootstrap, {left, paid, left_quiet}, expect=2)

    assert sorted((e.email, e.offer_id, e.send_recovery_email) for e in found) == sorted([
        (left, reminded["id"], True), (left_quiet, quiet["id"], False)])
    [event] = [e for e in found if e.email == left]
    assert (event.offer_name, event.amount.amount, event.amount.currency, event.customer_id) == (
        "Course", 4900, "EUR", None)
    assert 60 <= (event.abandoned_at - event.started_at).total_seconds() < 120
    # The link reopens the offer's checkout with the email filled in, and signs no one in.
    resumed = httpx.get(event.resume_url, timeout=10)
    assert resumed.status_code == 200 and f'value="{html.escape(left)}"' in resumed.text
    assert event.resume_url.startswith(f"{suite.url('checkout')}/offers/{reminded['id']}?")

    # The buyer who left gets one reminder, with the link back and one-click unsubscribe; the one who
    # paid and the one whose offer has the reminder switched off get none.
    reminder = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"abandoned-checkout:{event.checkout_id}",
                                   timeout=60)
    assert reminder["To"] == left and reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert html.escape(event.resume_url) in reminder.get_body(("html",)).get_content()
    recoveries = [m for m in smtp_inbox.messages if (m["X-Postsale-Email-Key"] or "").startswith("abandoned-checkout:")]
    assert sorted(m["To"] for m in recoveries if m["To"] in {left, paid, left_quiet}) == [left]


@pytest.mark.parametrize("suite", ["stripe"], indirect=True)
def test_an_abandoned_stripe_attempt_releases_its_coupon(suite, kafka_bootstrap):
    assert on_stripe(suite)
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"C {uuid.uuid4().hex[:6]}")])
    code = f"LAST{uuid.uuid4().hex[:6]}".upper()
    with suite.admin("checkout") as checkout:
        assert checkout.post("/admin/coupons", json={"code": code, "percent_off": 20, "max_redemptions": 1,
                                                     "offer_ids": [offer["id"]]}).status_code == 201
    email, browser = f"left-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    with recovery_delay(suite, 1):
        payment_url = start_checkout(browser, suite, offer["id"], email)
        assert browser.post(f"{payment_url}/coupon", data={"code": code}).status_code == 200
        start_stripe_payment(browser, payment_url)  # the card form opens; the buyer leaves
        with suite.admin("checkout") as checkout:
            [held] = [c for c in checkout.get("/admin/coupons").json() if c["code"] == code]
        assert held["redemptions"] == 1
        [event] = abandoned(kafka_bootstrap, {email}, expect=1)
    assert event.amount.amount == 3920
    with suite.admin("checkout") as checkout:
        [released] = [c for c in checkout.get("/admin/coupons").json() if c["code"] == code]
    assert released["redemptions"] == 0
