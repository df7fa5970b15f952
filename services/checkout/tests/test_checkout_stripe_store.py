"""A store on Stripe never takes the sandbox's test cards, and says so."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlmodel import Session

from postsale.checkout.adapters.tables import CatalogProduct
from postsale.checkout.config import MIGRATIONS_DIR, Settings
from postsale.checkout.entrypoints.app import create_app
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}


@pytest.fixture
def stripe_store(tmp_path, monkeypatch):
    for name, value in {
        "CHECKOUT_DATABASE_URL": f"sqlite:///{tmp_path / 'checkout.db'}",
        "CHECKOUT_ADMIN_TOKEN": "admin-token-for-tests",
        "CHECKOUT_SECRET_KEY": "secret-key-for-the-tests",
        "CHECKOUT_PAYMENT_PROVIDER": "stripe",
        "CHECKOUT_STRIPE_API_KEY": "sk_test_postsale",
        "CHECKOUT_STRIPE_WEBHOOK_SECRET": "whsec_postsale_tests_only",
        "CHECKOUT_STRIPE_PUBLISHABLE_KEY": "pk_test_postsale",
    }.items():
        monkeypatch.setenv(name, value)
    handlers = logging.getLogger().handlers[:]
    app = create_app()  # it sets up JSON logs on the root logger: put pytest's back afterwards
    logging.getLogger().handlers[:] = handlers
    migrate(app.state.engine, MIGRATIONS_DIR)
    with Session(app.state.engine) as session:
        session.add(CatalogProduct(id="prod_1", name="Course", delivery_type="membership"))
        session.commit()
    # Without the lifespan: these pages need the database, not Kafka.
    return TestClient(app, follow_redirects=False)


def test_the_payment_page_of_a_stripe_store_refuses_test_cards(stripe_store):
    offer = stripe_store.post("/admin/offers", headers=ADMIN, json={
        "name": "Course", "product_ids": ["prod_1"], "price": {"amount": 4900, "currency": "EUR"}})
    assert offer.status_code == 201, offer.text
    started = stripe_store.post(f"/offers/{offer.json()['id']}/checkout", data={"email": "ann@example.com"})
    payment_page = stripe_store.get(started.headers["location"])
    assert 'id="payment-element"' in payment_page.text and "pk_test_postsale" in payment_page.text
    assert 'name="card_number"' not in payment_page.text

    paid = stripe_store.post(f"{started.headers['location']}/pay", data={"card_number": "4242424242424242"})
    assert paid.status_code == 409
    assert "card numbers typed here" in paid.text and "are never charged" in paid.text
    assert stripe_store.get("/admin/purchases", headers=ADMIN).json() == []


def test_a_stripe_store_without_its_keys_does_not_start(monkeypatch):
    monkeypatch.setenv("CHECKOUT_ADMIN_TOKEN", "admin-token-for-tests")
    monkeypatch.setenv("CHECKOUT_SECRET_KEY", "secret-key-for-the-tests")
    monkeypatch.setenv("CHECKOUT_PAYMENT_PROVIDER", "stripe")
    with pytest.raises(ValidationError, match="needs CHECKOUT_STRIPE_API_KEY and CHECKOUT_STRIPE_WEBHOOK_SECRET"):
        Settings()


def test_a_person_gets_an_error_page_and_a_program_gets_json(stripe_store):
    missing = stripe_store.get("/offers/offer_nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "This offer does not exist." in missing.text
    stale = stripe_store.get("/checkout/cs_gone")
    assert stale.status_code == 404 and "This checkout does not exist or has expired." in stale.text
    api = stripe_store.get("/admin/offers/offer_nope", headers=ADMIN)
    assert api.status_code == 404 and api.json() == {"detail": "no offer offer_nope"}


def test_a_live_stripe_store_refuses_the_lifecycle_simulator(stripe_store, monkeypatch):
    monkeypatch.setenv("CHECKOUT_STRIPE_API_KEY", "sk_live_postsale")
    handlers = logging.getLogger().handlers[:]
    live = TestClient(create_app(), follow_redirects=False)
    logging.getLogger().handlers[:] = handlers
    refused = live.post("/admin/sandbox/clock", headers=ADMIN, json={"customer_id": "cus_1", "advance_days": 30})
    assert refused.status_code == 409 and "where no money moves" in refused.json()["detail"]
