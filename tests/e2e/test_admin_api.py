"""What a seller's systems see of the admin APIs: the access check, and clear errors for bad requests."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import eventually, start_checkout

pytestmark = pytest.mark.e2e


def test_the_access_check_says_who_may_use_what_and_why(suite, store):
    email = f"fay-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    paid = browser.post(f"{start_checkout(browser, suite, store.offer_id, email)}/pay",
                        data={"card_number": "4242424242424242"})
    assert paid.status_code == 303
    with suite.admin("checkout") as checkout, suite.admin("entitlements") as entitlements:
        purchase = checkout.get("/admin/purchases", params={"email": email}).json()[0]
        customer_id = purchase["customer_id"]

        def access(product_id: str) -> dict:
            return entitlements.get("/admin/access", params={"customer_id": customer_id, "product_id": product_id}).json()

        granted = eventually(lambda: (answer := access(store.product_id))["has_access"] and answer)
        assert (granted["reason"], granted["customer_id"]) == ("purchase", customer_id)
        assert access("prod_never_bought") == {"customer_id": customer_id, "product_id": "prod_never_bought",
                                                "has_access": False, "grant_id": None, "reason": None,
                                                "granted_at": None}


def test_admin_apis_refuse_bad_requests_with_a_clear_4xx(suite, store):
    entitlements_url, checkout_url = suite.url("entitlements"), suite.url("checkout")
    assert httpx.post(f"{entitlements_url}/admin/products", json={"name": "x", "delivery_type": "none"}).status_code == 401
    wrong = httpx.post(f"{entitlements_url}/admin/products", json={"name": "x", "delivery_type": "none"},
                       headers={"Authorization": "Bearer not-the-token"})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "admin token missing or wrong")

    with suite.admin("entitlements") as entitlements, suite.admin("checkout") as checkout:
        bad_type = entitlements.post("/admin/products", json={"name": "Box", "delivery_type": "parcel"})
        assert bad_type.status_code == 422
        assert bad_type.json()["message"].startswith("delivery_type: Input should be")
        not_json = entitlements.post("/admin/products", content=b"{not json", headers={"content-type": "application/json"})
        assert not_json.status_code == 422

        unknown = checkout.post("/admin/offers", json={"name": "O", "product_ids": ["prod_nope"],
                                                       "price": {"amount": 100, "currency": "EUR"}})
        assert (unknown.status_code, unknown.json()["detail"]) == (422, "unknown product id(s): prod_nope")
        negative = checkout.post("/admin/offers", json={"name": "O", "product_ids": [store.product_id],
                                                        "price": {"amount": -1, "currency": "EURO"}})
        assert negative.status_code == 422
        assert "price.amount" in negative.json()["message"] and "price.currency" in negative.json()["message"]
        assert checkout.get("/admin/offers/offer_nope").status_code == 404

    assert httpx.get(f"{checkout_url}/offers/offer_nope").status_code == 404
    assert httpx.get(f"{checkout_url}/checkout/cs_nope").status_code == 404
    # A form's address reached with GET (a bookmark, a reload) is a page that says so, as in every service.
    wrong_method = httpx.get(f"{checkout_url}/checkout/cs_nope/pay", headers={"Accept": "text/html"})
    assert wrong_method.status_code == 405 and "This page does not exist" in wrong_method.text
    # A sandbox store takes no Stripe webhooks at all (the Stripe suite checks bad signatures).
    not_stripe = httpx.post(f"{checkout_url}/webhooks/stripe", content=b"not json",
                            headers={"Stripe-Signature": "t=1,v1=00"})
    assert not_stripe.status_code == 404 and "takes no webhooks from stripe" in not_stripe.json()["detail"]
