"""The funnel on a store on Stripe (stripe-mock for the API, webhooks signed with the real scheme).

stripe-mock answers every intent with a fixture and never reports a payment as succeeded, so,
as with Stripe itself, a purchase completes when Stripe's signed webhook says the intent
succeeded, and only when its amount and currency are what the attempt charges.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support import (JSON, create_offer, create_product, csrf_token, eventually, send_stripe_event, set_up_account,
                           sign_webhook, start_checkout, start_stripe_payment)

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["stripe"], indirect=True)]


def purchases(suite, email: str) -> list[dict]:
    with suite.admin("checkout") as checkout:
        return checkout.get("/admin/purchases", params={"email": email}).json()


def webhook(suite, checkout_id: str, intent_id: str, *, amount: int, currency: str = "eur",
            setup: bool = False, event_id: str | None = None, payment_method: str = "pm_card_visa") -> httpx.Response:
    intent = {"id": intent_id, "object": "setup_intent" if setup else "payment_intent", "status": "succeeded",
              "payment_method": payment_method, "customer": "cus_postsale_test",
              "metadata": {"postsale_checkout_session": checkout_id,
                           **({"postsale_currency": currency.upper()} if setup else {})}}
    if not setup:
        intent |= {"amount": amount, "currency": currency}
    event = {"id": event_id or f"evt_{uuid.uuid4().hex}", "object": "event", "api_version": "2024-06-20",
             "type": "setup_intent.succeeded" if setup else "payment_intent.succeeded",
             "created": int(time.time()), "livemode": False, "data": {"object": intent}}
    payload = json.dumps(event).encode()
    return httpx.post(f"{suite.url('checkout')}/webhooks/stripe", content=payload,
                      headers={"Stripe-Signature": sign_webhook(payload)})


def test_the_verified_webhook_completes_the_purchase_once_and_only_for_the_right_amount(suite):
    product = create_product(suite, f"Course {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Course", product_ids=[product])
    email, browser = f"cy-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    checkout_id = payment_url.rsplit("/", 1)[1]
    page = browser.get(payment_url)
    assert 'id="payment-element"' in page.text and 'name="card_number"' not in page.text
    intent = start_stripe_payment(browser, payment_url)
    assert intent["mode"] == "payment" and intent["payment_id"].startswith("pi_")

    payload = b'{"id": "evt_forged", "object": "event"}'
    forged = httpx.post(f"{suite.url('checkout')}/webhooks/stripe", content=payload,
                        headers={"Stripe-Signature": sign_webhook(payload, "whsec_not_the_secret")})
    assert forged.status_code == 400 and "invalid webhook" in forged.json()["detail"]
    assert httpx.post(f"{suite.url('checkout')}/webhooks/stripe", content=payload).status_code == 400
    assert httpx.post(f"{suite.url('checkout')}/webhooks/sandbox", content=payload).status_code == 404

    # Stripe never changes a payment's amount: each wrong one is a payment of its own (an intent made
    # before the buyer changed the order), given back, and never completes anything later.
    short_id, wrong_currency_id = f"pi_short_{uuid.uuid4().hex[:12]}", f"pi_usd_{uuid.uuid4().hex[:12]}"
    short = webhook(suite, checkout_id, short_id, amount=100)
    assert short.json() == {"status": "accepted"}
    wrong_currency = webhook(suite, checkout_id, wrong_currency_id, amount=4900, currency="usd")
    assert wrong_currency.json() == {"status": "accepted"}
    # A later event for a returned payment, even one naming the right amount, completes nothing.
    assert webhook(suite, checkout_id, short_id, amount=4900).json() == {"status": "accepted"}
    assert purchases(suite, email) == []
    returned = browser.get(f"{suite.url('checkout')}/checkout/{checkout_id}/returned")
    assert returned.status_code == 200 and returned.text.count("We did not keep your payment") == 2

    event_id = f"evt_{uuid.uuid4().hex}"
    first = webhook(suite, checkout_id, intent["payment_id"], amount=4900, event_id=event_id)
    again = webhook(suite, checkout_id, intent["payment_id"], amount=4900, event_id=event_id)
    assert (first.json(), again.json()) == ({"status": "accepted"}, {"status": "duplicate"})
    [purchase] = purchases(suite, email)
    assert (purchase["provider"], purchase["provider_payment_id"]) == ("stripe", intent["payment_id"])

    # The buyer returning from Stripe.js goes on to the account page.
    back = browser.post(f"{payment_url}/complete", data={})
    assert back.headers["location"].startswith(f"{suite.url('accounts')}/setup?purchase={purchase['id']}")
    assert eventually(lambda: httpx.get(
        f"{suite.url('entitlements')}/admin/access",
        params={"customer_id": purchase["customer_id"], "product_id": product},
        headers={"Authorization": f"Bearer {suite.admin_token('entitlements')}"}).json()["has_access"])


@pytest.mark.parametrize(("billing", "price", "form", "charged"), [
    ({"type": "one_time"}, 4900, {}, 4900),
    ({"type": "subscription", "interval": "month", "trial_days": 7}, 1900, {}, 0),
    ({"type": "subscription", "interval": "year"}, 9900, {}, 9900),
    ({"type": "payment_plan", "interval": "month", "instalments": 3}, 3300, {}, 3300),
    ({"type": "pay_what_you_want", "minimum": 500}, 1500, {"amount": "7.25"}, 725),
], ids=["one_time", "trial", "yearly", "payment_plan", "pay_what_you_want"])
def test_each_paid_price_model_charges_through_stripe(suite, billing, price, form, charged):
    offer = create_offer(suite, name="Offer", product_ids=[create_product(suite, f"P {uuid.uuid4().hex[:6]}")],
                         price={"amount": price, "currency": "EUR"}, billing=billing)
    email, browser = f"pm-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    intent = start_stripe_payment(browser, payment_url, **form)
    assert intent["mode"] == ("payment" if charged else "setup")
    assert intent["payment_id"].startswith("pi_" if charged else "seti_")
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=charged, setup=not charged)
    [purchase] = purchases(suite, email)
    assert purchase["price"]["amount"] == charged
    assert (purchase["subscription_id"] is not None) == (billing["type"] in ("subscription", "payment_plan"))


def test_a_free_offer_on_stripe_asks_stripe_for_nothing(suite):
    offer = create_offer(suite, name="Free", product_ids=[create_product(suite, f"Free {uuid.uuid4().hex[:6]}")],
                         price={"amount": 0, "currency": "EUR"}, billing={"type": "free"})
    email, browser = f"fr-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert 'id="payment-element"' not in browser.get(payment_url).text
    got = browser.post(f"{payment_url}/pay", data={}, headers=JSON)
    assert got.json()["status"] == "succeeded"
    assert [p["provider"] for p in purchases(suite, email)] == ["none"]


def test_coupon_and_order_bump_are_charged_in_one_stripe_payment(suite):
    run = uuid.uuid4().hex[:6]
    bump = create_offer(suite, name="Workbook", product_ids=[create_product(suite, f"Workbook {run}")],
                        price={"amount": 1500, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"Course {run}")],
                         order_bump_offer_id=bump["id"])
    with suite.admin("checkout") as checkout:
        checkout.post("/admin/coupons", json={"code": f"TEN{run}", "amount_off": 1000, "currency": "EUR",
                                              "offer_ids": [offer["id"]]}).raise_for_status()
    email, browser = f"cb-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert browser.post(f"{payment_url}/coupon", data={"code": f"ten{run}"}).status_code == 200
    intent = start_stripe_payment(browser, payment_url, order_bump="on")
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=3900 + 1500)
    bought = {p["offer_id"]: p for p in purchases(suite, email)}
    assert (bought[offer["id"]]["price"]["amount"], bought[bump["id"]]["price"]["amount"]) == (3900, 1500)
    assert bought[bump["id"]]["parent_purchase_id"] == bought[offer["id"]]["id"]


def test_an_upsell_on_stripe_charges_the_saved_card_off_session_and_a_failing_card_is_told(suite):
    run = uuid.uuid4().hex[:6]
    upsell = create_offer(suite, name="Coaching", product_ids=[create_product(suite, f"Coaching {run}")],
                          price={"amount": 9900, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"Course {run}")],
                         upsells=[{"offer_id": upsell["id"]}])
    for card, accepted in (("pm_card_visa", True), ("pm_card_chargeCustomerFail", False)):
        email, browser = f"up-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
        payment_url = start_checkout(browser, suite, offer["id"], email)
        intent = start_stripe_payment(browser, payment_url)
        webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=4900, payment_method=card)
        assert browser.get(payment_url).headers["location"].endswith("/upsell")
        answer = browser.post(f"{payment_url}/upsell", data={"position": "0:up", "decision": "accept"})
        if accepted:  # one click: charged off-session, no card entry
            assert answer.status_code == 303
            bought = {p["offer_id"]: p for p in purchases(suite, email)}
            assert bought[upsell["id"]]["parent_purchase_id"] == bought[offer["id"]]["id"]
            assert bought[upsell["id"]]["provider_payment_id"].startswith("pi_")
        else:  # the card saved at checkout fails when charged: the buyer is told and goes on without it
            assert answer.status_code == 402 and "Your card was declined." in answer.text
            assert len(purchases(suite, email)) == 1
            answer = browser.post(f"{payment_url}/upsell", data={"position": "0:up", "decision": "decline"})
        onwards = browser.get(suite.url("checkout") + answer.headers["location"])
        assert onwards.headers["location"].startswith(f"{suite.url('accounts')}/setup?")


def test_a_cart_on_stripe_is_one_payment_and_its_settings_override_the_offers(suite):
    run = uuid.uuid4().hex[:6]
    first = create_offer(suite, name="A", product_ids=[create_product(suite, f"A {run}")],
                         price={"amount": 3000, "currency": "EUR"}, post_purchase={"destination": "thank_you"})
    second = create_offer(suite, name="B", product_ids=[create_product(suite, f"B {run}")],
                          price={"amount": 2000, "currency": "EUR"})
    landing = "https://seller.example/thanks"
    with suite.admin("checkout") as checkout:
        cart = checkout.post("/admin/carts", json={
            "name": "Bundle", "offer_ids": [first["id"], second["id"]],
            "post_purchase": {"skip_account_page": True, "destination": "landing_page", "landing_page_url": landing}})
        assert cart.status_code == 201, cart.text
    email, browser = f"ca-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    started = browser.post(cart.json()["checkout_url"] + "/checkout", data={"email": email})
    payment_url = suite.url("checkout") + started.headers["location"]
    intent = start_stripe_payment(browser, payment_url)
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=5000)
    assert sorted(p["price"]["amount"] for p in purchases(suite, email)) == [2000, 3000]
    assert browser.post(f"{payment_url}/complete", data={}).headers["location"] == landing


def test_a_password_chosen_on_the_stripe_payment_page_reaches_accounts_after_the_webhook(suite):
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"C {uuid.uuid4().hex[:6]}")],
                         post_purchase={"require_password": True})
    email, browser = f"pw-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    fields = {"first_name": "Pia", "last_name": "Lund", "password": "stripe passphrase",
              "password_repeat": "stripe passphrase"}
    too_short = browser.post(f"{payment_url}/pay", data={**fields, "password_repeat": "x"}, headers=JSON)
    assert too_short.status_code == 422 and too_short.json()["status"] == "invalid"
    intent = start_stripe_payment(browser, payment_url, **fields)
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=4900)
    # Stripe.js confirmed; the page posts the same form to /complete, and the password goes on.
    handed = browser.post(f"{payment_url}/complete", data=fields)
    assert f'action="{suite.url("accounts")}/setup/checkout"' in handed.text


def bought_through_stripe(suite, offer: dict, *, charged: int) -> dict:
    email, browser = f"lc-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    intent = start_stripe_payment(browser, payment_url)
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=charged)
    [purchase] = purchases(suite, email)
    return purchase


def test_refunds_and_disputes_arrive_from_stripe_in_any_order_and_count_once(suite):
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"C {uuid.uuid4().hex[:6]}")])
    purchase = bought_through_stripe(suite, offer, charged=4900)
    intent = purchase["provider_payment_id"]
    # The same payment reported again later changes nothing.
    assert webhook(suite, "cs_unknown", intent, amount=4900).json() == {"status": "accepted"}
    with suite.admin("checkout") as checkout:
        refund = checkout.post(f"/admin/purchases/{purchase['id']}/refunds", json={"amount": 1000})
        assert refund.status_code == 201, refund.text
        ours = refund.json()["provider_refund_id"]
        # Stripe reports our refund and one the seller made in Stripe's dashboard.
        reported = send_stripe_event(suite, "charge.refunded", {
            "id": "ch_1", "object": "charge", "payment_intent": intent, "amount": 4900, "currency": "eur",
            "amount_refunded": 2500, "refunds": {"data": [{"id": ours, "amount": 1000},
                                                          {"id": f"re_dash_{uuid.uuid4().hex[:8]}", "amount": 1500}]}})
        assert reported.json() == {"status": "accepted"}
        detail = checkout.get(f"/admin/purchases/{purchase['id']}").json()
        assert [(r["amount"]["amount"], r["actor"]) for r in detail["refunds"]] == [(1000, "seller"), (1500, "provider")]

        dispute = {"id": f"dp_{uuid.uuid4().hex[:8]}", "object": "dispute", "payment_intent": intent, "amount": 4900,
                   "currency": "eur", "reason": "fraudulent", "status": "lost"}
        # Closed first, created late: the late one cannot reopen it.
        send_stripe_event(suite, "charge.dispute.closed", dispute)
        send_stripe_event(suite, "charge.dispute.created", {**dispute, "status": "needs_response"})
        [recorded] = checkout.get(f"/admin/purchases/{purchase['id']}").json()["disputes"]
        assert recorded["status"] == "lost"


def test_a_stripe_subscription_is_cancelled_paused_and_resumed_by_the_seller(suite):
    offer = create_offer(suite, name="Club", product_ids=[create_product(suite, f"Club {uuid.uuid4().hex[:6]}")],
                         price={"amount": 1900, "currency": "EUR"}, billing={"type": "subscription", "interval": "month"})
    purchase = bought_through_stripe(suite, offer, charged=1900)
    sub = f"/admin/subscriptions/{purchase['subscription_id']}"
    with suite.admin("checkout") as checkout:
        pending = checkout.post(f"{sub}/cancel", json={"when": "period_end"}).json()
        assert pending["cancel_at"] == pending["current_period_end"] and pending["next_charge_at"] is None
        assert checkout.post(f"{sub}/undo-cancel").json()["next_charge_at"] == pending["current_period_end"]
        assert checkout.post(f"{sub}/pause").json()["status"] == "paused"
        assert checkout.post(f"{sub}/resume").json()["status"] == "active"
        on_date = checkout.post(f"{sub}/cancel", json={"when": "date", "at": "2020-01-01T00:00:00Z"})
        assert on_date.status_code == 409 and "in the future" in on_date.json()["detail"]
        now = checkout.post(f"{sub}/cancel", json={"when": "now", "reason": "asked by email"}).json()
        assert (now["status"], now["cancel_reason"]) == ("cancelled", "asked by email")


def test_a_stripe_subscription_renews_fails_recovers_with_a_new_card_and_ends(suite, stripe_test_mode):
    """The sandbox's lifecycle scenario on Stripe's test mode: the same scheduler charges the card
    saved at checkout off-session; `pm_card_chargeCustomerFail` fails when charged."""
    club = create_product(suite, f"Club {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 1900, "currency": "EUR"},
                         billing={"type": "subscription", "interval": "month", "trial_days": 14})
    email, browser = f"lc-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    intent = start_stripe_payment(browser, payment_url)
    assert intent["mode"] == "setup"
    stripe_test_mode.confirm(intent["payment_id"])
    webhook(suite, payment_url.rsplit("/", 1)[1], intent["payment_id"], amount=0, setup=True)
    [purchase] = purchases(suite, email)
    paid = browser.post(f"{payment_url}/complete", data={})
    assert set_up_account(browser, suite, paid.headers["location"]).status_code == 303
    customer, sub_id = purchase["customer_id"], purchase["subscription_id"]
    with suite.admin("checkout") as checkout:
        state = checkout.get(f"/admin/subscriptions/{sub_id}").json()

        def advance_to_next_charge(state: dict, now: datetime) -> tuple[dict, datetime]:
            days = math.ceil((datetime.fromisoformat(state["next_charge_at"]) - now) / timedelta(days=1))
            moved = checkout.post("/admin/sandbox/clock", json={"customer_id": customer, "advance_days": max(1, days)})
            assert moved.status_code == 200, moved.text
            return moved.json()["subscriptions"][0], datetime.fromisoformat(moved.json()["now"])

        now = datetime.fromisoformat(purchase["completed_at"])
        for _ in range(4):  # the trial's end and three renewals
            state, now = advance_to_next_charge(state, now)
        assert [a["succeeded"] for a in state["dunning"]] == [True] * 4 and state["status"] == "active"
        assert all(p["provider_payment_id"].startswith("pi_") for p in state["payments"][1:])

        billing = f"{suite.url('checkout')}/billing"

        def new_card(payment_method: str) -> httpx.Response:
            token = {"csrf_token": csrf_token(browser, suite)}  # the card page's form carries it
            started = browser.post(f"{billing}/subscriptions/{sub_id}/card", headers=JSON, data=token)
            assert started.json()["mode"] == "setup"
            stripe_test_mode.confirm(started.json()["payment_id"], payment_method)
            return browser.post(f"{billing}/subscriptions/{sub_id}/card/complete",
                                data={"payment_id": started.json()["payment_id"], **token})

        assert "Your new card is saved." in new_card("pm_card_chargeCustomerFail").text
        state, now = advance_to_next_charge(state, now)
        assert state["status"] == "past_due" and state["dunning"][-1]["message"] == "Your card was declined."
        state, now = advance_to_next_charge(state, now)  # the first retry fails too
        assert [a["succeeded"] for a in state["dunning"][-2:]] == [False, False]
        assert "Your new card is saved." in new_card("pm_card_visa").text
        state = checkout.get(f"/admin/subscriptions/{sub_id}").json()
        assert state["status"] == "active" and state["dunning"][-1]["succeeded"] is True

        ended = checkout.post(f"/admin/subscriptions/{sub_id}/cancel", json={"when": "period_end"}).json()
        state, now = advance_to_next_charge({**ended, "next_charge_at": ended["cancel_at"]}, now)
        assert state["status"] == "cancelled"
