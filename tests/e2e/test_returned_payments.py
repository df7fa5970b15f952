"""A Stripe payment that is not what its attempt charges is given back: the buyer changed the order
bump after an intent was made and paid the old intent in another tab. Never a purchase; refunded in
full once, shown to the seller with the reason, and the buyer is told what happened and what to do."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import create_offer, create_product, send_stripe_event, start_checkout, start_stripe_payment

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["stripe"], indirect=True)]


def purchases(suite, email: str) -> list[dict]:
    with suite.admin("checkout") as checkout:
        return checkout.get("/admin/purchases", params={"email": email}).json()


def returned(suite, email: str) -> list[dict]:
    with suite.admin("checkout") as checkout:
        answer = checkout.get("/admin/returned-payments", params={"email": email})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.mark.parametrize("first", ["webhook", "buyer"])
def test_a_payment_of_an_order_changed_since_is_refunded_once_and_the_buyer_can_pay_again(
        suite, stripe_test_mode, first):
    run = uuid.uuid4().hex[:6]
    bump = create_offer(suite, name="Workbook", product_ids=[create_product(suite, f"Workbook {run}")],
                        price={"amount": 1500, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=[create_product(suite, f"Course {run}")],
                         order_bump_offer_id=bump["id"])
    email, browser = f"rt-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    old = start_stripe_payment(browser, payment_url)  # the first tab: 49.00
    new = start_stripe_payment(browser, payment_url, order_bump="on")  # the bump ticked: 64.00
    assert old["payment_id"] != new["payment_id"]

    # The old tab's card form confirms the 49.00 intent; Stripe reports it, and the old tab goes on.
    stripe_test_mode.confirm(old["payment_id"])

    def webhook() -> httpx.Response:
        return send_stripe_event(suite, "payment_intent.succeeded", stripe_test_mode.intent(old["payment_id"]))

    def back() -> httpx.Response:
        return browser.post(f"{payment_url}/complete", data={"payment_id": old["payment_id"]})

    if first == "webhook":
        assert webhook().json() == {"status": "accepted"}
        came_back = back()
    else:
        came_back = back()
        assert webhook().json() == {"status": "accepted"}
    assert came_back.status_code == 303 and came_back.headers["location"].endswith("/returned")
    told = browser.get(suite.url("checkout") + came_back.headers["location"])
    assert told.status_code == 200 and "Your payment was returned" in told.text
    assert "49.00 EUR" in told.text and "refunded in full" in told.text and "pay again" in told.text

    # Never a purchase; the seller sees the payment given back, and why.
    assert purchases(suite, email) == []
    [given_back] = returned(suite, email)
    assert (given_back["provider_payment_id"], given_back["amount"]) == (old["payment_id"],
                                                                         {"amount": 4900, "currency": "EUR"})
    assert given_back["status"] == "refunded" and given_back["provider_refund_id"].startswith("re_")
    assert "49.00 EUR" in given_back["reason"] and "64.00 EUR" in given_back["reason"]

    # Stripe delivers it again, and the buyer reloads: still one return, one refund.
    assert webhook().json() == {"status": "accepted"}
    assert back().headers["location"].endswith("/returned")
    assert returned(suite, email) == [given_back]

    # The buyer pays the order as it is now: both offers, in one payment.
    stripe_test_mode.confirm(new["payment_id"])
    assert send_stripe_event(suite, "payment_intent.succeeded",
                             stripe_test_mode.intent(new["payment_id"])).json() == {"status": "accepted"}
    assert sorted(p["price"]["amount"] for p in purchases(suite, email)) == [1500, 4900]
    assert {p["provider_payment_id"] for p in purchases(suite, email)} == {new["payment_id"]}
    assert returned(suite, email) == [given_back]


def test_a_card_saved_for_a_trial_before_the_bump_was_ticked_is_no_purchase_and_nothing_is_refunded(
        suite, stripe_test_mode):
    run = uuid.uuid4().hex[:6]
    bump = create_offer(suite, name="Workbook", product_ids=[create_product(suite, f"Workbook {run}")],
                        price={"amount": 1500, "currency": "EUR"})
    offer = create_offer(suite, name="Club", product_ids=[create_product(suite, f"Club {run}")],
                         price={"amount": 1900, "currency": "EUR"}, order_bump_offer_id=bump["id"],
                         billing={"type": "subscription", "interval": "month", "trial_days": 14})
    email, browser = f"rs-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    old = start_stripe_payment(browser, payment_url)  # the trial alone: only a card saved
    assert old["mode"] == "setup"
    assert start_stripe_payment(browser, payment_url, order_bump="on")["mode"] == "payment"  # the bump: 15.00 now

    stripe_test_mode.confirm(old["payment_id"])
    assert send_stripe_event(suite, "setup_intent.succeeded",
                             stripe_test_mode.intent(old["payment_id"])).json() == {"status": "accepted"}
    assert purchases(suite, email) == []
    [given_back] = returned(suite, email)
    assert (given_back["amount"]["amount"], given_back["status"], given_back["provider_refund_id"]) == (
        0, "refunded", None)
    assert given_back["message"] == "Nothing was charged: only the card was saved."
    came_back = browser.post(f"{payment_url}/complete", data={"payment_id": old["payment_id"]})
    told = browser.get(suite.url("checkout") + came_back.headers["location"])
    assert "nothing was charged" in told.text and "pay again" in told.text
