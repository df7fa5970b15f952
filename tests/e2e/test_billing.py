"""The billing lifecycle on the sandbox, driven by the lifecycle simulator's clock: renewals,
dunning and recovery, cancellation at period end, a payment plan, refunds, disputes, pause and
resume. Real services, broker, PostgreSQL and SMTP."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support import (create_offer, create_product, csrf_token, eventually, pay, set_up_account,
                           start_checkout)

pytestmark = pytest.mark.e2e
SANDBOX = pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
BOTH_PROVIDERS = pytest.mark.parametrize("suite", ["postgresql", "stripe"], indirect=True)
MONTHLY_WITH_TRIAL = {"type": "subscription", "interval": "month", "trial_days": 14}


def buy(suite, offer: dict, *, card: str = "4242424242424242", log_in: bool = True,
        stripe=None) -> tuple[httpx.Client, dict]:
    """A new customer buys `offer` (and sets up the account, so the billing page is theirs)."""
    email, browser = f"bill-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=20)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], email), card=card, stripe=stripe)
    assert paid.status_code == 303, paid.text
    if log_in:
        assert set_up_account(browser, suite, paid.headers["location"]).status_code == 303
    with suite.admin("checkout") as checkout:
        [purchase] = checkout.get("/admin/purchases", params={"email": email}).json()
    return browser, purchase


def subscription(suite, subscription_id: str) -> dict:
    with suite.admin("checkout") as checkout:
        return checkout.get(f"/admin/subscriptions/{subscription_id}").json()


def advance(suite, customer_id: str, days: int) -> dict:
    with suite.admin("checkout") as checkout:
        moved = checkout.post("/admin/sandbox/clock", json={"customer_id": customer_id, "advance_days": days})
    assert moved.status_code == 200, moved.text
    return moved.json()


def has_access(suite, customer_id: str, product_id: str) -> bool:
    with suite.admin("entitlements") as entitlements:
        return entitlements.get("/admin/access", params={"customer_id": customer_id,
                                                         "product_id": product_id}).json()["has_access"]


def advance_to_next_charge(suite, customer_id: str, state: dict, now: datetime) -> tuple[dict, datetime]:
    """Moves the customer's clock to the subscription's next charge (whole days, as the simulator
    takes them; charges are days apart, so it never runs two); returns the state and the new now."""
    days = math.ceil((datetime.fromisoformat(state["next_charge_at"]) - now) / timedelta(days=1))
    moved = advance(suite, customer_id, max(1, days))
    [state] = [s for s in moved["subscriptions"] if s["id"] == state["id"]]
    return state, datetime.fromisoformat(moved["now"])


@SANDBOX
def test_a_trial_renews_fails_is_recovered_by_a_new_card_then_ends_at_period_end(suite, smtp_inbox):
    club = create_product(suite, f"Club {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 1900, "currency": "EUR"},
                         billing=MONTHLY_WITH_TRIAL)
    browser, purchase = buy(suite, offer)
    customer, sub_id = purchase["customer_id"], purchase["subscription_id"]
    state, now = subscription(suite, sub_id), datetime.fromisoformat(purchase["completed_at"])
    assert state["status"] == "trialing"

    state, now = advance_to_next_charge(suite, customer, state, now)  # the trial ends: the first charge
    assert state["status"] == "active" and [a["succeeded"] for a in state["dunning"]] == [True]
    for _ in range(3):  # three renewals
        state, now = advance_to_next_charge(suite, customer, state, now)
    assert [a["amount"]["amount"] for a in state["dunning"] if a["succeeded"]] == [1900] * 4
    assert [p["kind"] for p in state["payments"]] == ["first payment"] + ["renewal"] * 4

    # The customer saves a card whose charges fail: the next renewal fails, and so do two retries.
    billing = f"{suite.url('checkout')}/billing"
    saved = browser.post(f"{billing}/subscriptions/{sub_id}/card", data={
        "card_number": "4000 0000 0000 0341", "csrf_token": csrf_token(browser, suite)})
    assert "Your new card is saved." in saved.text
    state, now = advance_to_next_charge(suite, customer, state, now)
    assert state["status"] == "past_due" and state["dunning"][-1]["succeeded"] is False
    page = browser.get(billing).text
    assert "Your last payment failed." in page and "19.00 EUR a month" in page
    assert eventually(lambda: has_access(suite, customer, club))  # kept while retries run
    failed_at = datetime.fromisoformat(state["dunning"][-1]["attempted_at"])
    for _ in range(2):
        state, now = advance_to_next_charge(suite, customer, state, now)
        assert state["status"] == "past_due"
    retries = [datetime.fromisoformat(a["next_retry_at"]) - failed_at for a in state["dunning"][-3:]]
    assert retries == [timedelta(days=3), timedelta(days=5), timedelta(days=7)]
    assert [a["succeeded"] for a in state["dunning"][-3:]] == [False, False, False]
    # One email to the customer for each failed attempt, each with the way to a new card.
    email = purchase["email"]
    eventually(lambda: len([m for m in smtp_inbox.messages if m["To"] == email
                            and m["Subject"] == "Your payment for Club did not go through"]) == 3)
    failed_emails = [m for m in smtp_inbox.messages if m["To"] == email and "did not go through" in m["Subject"]]
    assert all(billing in m.get_body(preferencelist=("plain",)).get_content() for m in failed_emails)

    # A working card recovers it at once.
    recovered = browser.post(f"{billing}/subscriptions/{sub_id}/card", data={
        "card_number": "4242424242424242", "csrf_token": csrf_token(browser, suite)})
    assert "Your new card is saved." in recovered.text
    state = subscription(suite, sub_id)
    assert state["status"] == "active" and state["dunning"][-1]["succeeded"] is True

    # Another site's form cannot cancel it for the customer: refused, and nothing changes.
    forged = browser.post(f"{billing}/subscriptions/{sub_id}/cancel", data={"reason": "forged"},
                          headers={"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403 and subscription(suite, sub_id)["cancel_reason"] is None

    # The customer cancels at the end of the period: access stays to the end, then goes.
    cancelled = browser.post(f"{billing}/subscriptions/{sub_id}/cancel", data={
        "reason": "too busy", "csrf_token": csrf_token(browser, suite)})
    assert "Cancelled: you keep access to the end of the paid period." in cancelled.text
    state = subscription(suite, sub_id)
    assert state["cancel_reason"] == "too busy" and state["next_charge_at"] is None
    assert has_access(suite, customer, club)
    ended = advance(suite, customer, 32)["subscriptions"][0]
    assert ended["status"] == "cancelled"
    assert eventually(lambda: not has_access(suite, customer, club))


@BOTH_PROVIDERS
def test_a_payment_plan_of_three_charges_every_instalment_and_completes(suite, stripe_test_mode):
    course = create_product(suite, f"Course {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Course", product_ids=[course], price={"amount": 3300, "currency": "EUR"},
                         billing={"type": "payment_plan", "interval": "month", "instalments": 3})
    browser, purchase = buy(suite, offer, stripe=stripe_test_mode)
    advance(suite, purchase["customer_id"], 31)
    state = advance(suite, purchase["customer_id"], 31)["subscriptions"][0]
    assert (state["status"], state["instalments_paid"], state["next_charge_at"]) == ("completed", 3, None)
    assert [p["amount"]["amount"] for p in state["payments"]] == [3300, 3300, 3300]
    page = browser.get(f"{suite.url('checkout')}/billing")
    assert "Paid in full." in page.text and "Cancel at the end" not in page.text
    refused = browser.post(f"{suite.url('checkout')}/billing/subscriptions/{purchase['subscription_id']}/cancel",
                           data={"csrf_token": csrf_token(browser, suite)})
    assert refused.status_code == 409
    assert eventually(lambda: has_access(suite, purchase["customer_id"], course))


@BOTH_PROVIDERS
def test_a_partial_refund_keeps_access_and_a_full_one_revokes_it(suite, stripe_test_mode):
    guide = create_product(suite, f"Guide {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Guide", product_ids=[guide])
    browser, purchase = buy(suite, offer, stripe=stripe_test_mode)
    customer = purchase["customer_id"]
    assert eventually(lambda: has_access(suite, customer, guide))
    with suite.admin("checkout") as checkout:
        refunds = f"/admin/purchases/{purchase['id']}/refunds"
        part = checkout.post(refunds, json={"amount": 1000, "reason": "goodwill"})
        assert part.status_code == 201 and part.json()["full"] is False
        # The customer's receipt says what was paid, what came back and what is left.
        [receipt_path] = re.findall(r'href="(/billing/receipts/[^"]+)"', browser.get(f"{suite.url('checkout')}/billing").text)
        receipt = " ".join(re.sub(r"<[^>]+>", " ", browser.get(f"{suite.url('checkout')}{receipt_path}").text).split())
        assert "Paid 49.00 EUR" in receipt and "−10.00 EUR" in receipt and "Total after refunds 39.00 EUR" in receipt
        assert checkout.post(refunds, json={"amount": 3901}).status_code == 409
        rest = checkout.post(refunds, json={})
        assert rest.status_code == 201 and rest.json()["full"] is True
        assert rest.json()["total_refunded"] == {"amount": 4900, "currency": "EUR"}
        assert checkout.post(refunds, json={}).status_code == 409
        detail = checkout.get(f"/admin/purchases/{purchase['id']}").json()
    assert [r["amount"]["amount"] for r in detail["refunds"]] == [1000, 3900]
    assert eventually(lambda: not has_access(suite, customer, guide))


@SANDBOX
def test_the_0259_card_is_disputed_and_the_bank_decides(suite):
    course = create_product(suite, f"Course {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Course", product_ids=[course])
    _, lost = buy(suite, offer, card="4000000000000259", log_in=False)
    _, won = buy(suite, offer, card="4000000000000259", log_in=False)
    with suite.admin("checkout") as checkout:
        def dispute_of(purchase):
            disputes = checkout.get(f"/admin/purchases/{purchase['id']}").json()["disputes"]
            return disputes[0] if disputes else None

        for purchase, outcome in ((lost, "lost"), (won, "won")):
            opened = eventually(lambda purchase=purchase: dispute_of(purchase))
            assert opened["status"] == "open"
            assert eventually(lambda purchase=purchase: not has_access(suite, purchase["customer_id"], course))
            decided = checkout.post(f"/admin/sandbox/disputes/{opened['id']}", json={"outcome": outcome})
            assert decided.status_code == 202
            eventually(lambda purchase=purchase, outcome=outcome: dispute_of(purchase)["status"] == outcome)
    assert eventually(lambda: has_access(suite, won["customer_id"], course))
    assert not has_access(suite, lost["customer_id"], course)


@BOTH_PROVIDERS
def test_a_paused_subscription_is_not_charged_and_resumes_where_it_stopped(suite, stripe_test_mode):
    club = create_product(suite, f"Club {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 900, "currency": "EUR"},
                         billing={"type": "subscription", "interval": "month"})
    _, purchase = buy(suite, offer, log_in=False, stripe=stripe_test_mode)
    sub_id, customer = purchase["subscription_id"], purchase["customer_id"]
    with suite.admin("checkout") as checkout:
        paused = checkout.post(f"/admin/subscriptions/{sub_id}/pause")
        assert paused.json()["status"] == "paused" and paused.json()["next_charge_at"] is None
        assert checkout.post(f"/admin/subscriptions/{sub_id}/pause").status_code == 409
        assert advance(suite, customer, 90)["ran"] == 0
        resumed = checkout.post(f"/admin/subscriptions/{sub_id}/resume").json()
    assert resumed["status"] == "active" and resumed["next_charge_at"] is not None
    assert len(resumed["payments"]) == 1
    state = advance(suite, customer, 31)["subscriptions"][0]
    assert [p["amount"]["amount"] for p in state["payments"]] == [900, 900]
