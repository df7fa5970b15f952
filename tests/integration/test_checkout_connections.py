"""Checkout's payments on PostgreSQL with the smallest connection pool: a payment request holds one
of the service's connections while the sandbox provider records the payment on its side, which
therefore must not wait for a second connection from the same pool (it would wait for good with
every connection so held, and the buyer would get an error page)."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from postsale.checkout.adapters.tables import CatalogProduct
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.entrypoints.app import create_app
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-the-tests"}


@pytest.fixture
def checkout(postgres, monkeypatch):
    database_url = postgres.create_database(f"checkout_pool_{uuid.uuid4().hex[:8]}")
    for name, value in {"CHECKOUT_DATABASE_URL": database_url, "CHECKOUT_ADMIN_TOKEN": ADMIN["Authorization"][7:],
                        "CHECKOUT_SECRET_KEY": "secret-key-for-the-tests", "POSTSALE_DATABASE_POOL_SIZE": "1",
                        "POSTSALE_DATABASE_MAX_OVERFLOW": "0", "POSTSALE_DATABASE_POOL_TIMEOUT": "3"}.items():
        monkeypatch.setenv(name, value)
    handlers = logging.getLogger().handlers[:]
    app = create_app()  # it sets up JSON logs on the root logger: put pytest's back afterwards
    logging.getLogger().handlers[:] = handlers
    migrate(app.state.engine, MIGRATIONS_DIR)
    with Session(app.state.engine) as session:
        session.add(CatalogProduct(id="prod_1", name="Course", delivery_type="membership"))
        session.commit()
    yield TestClient(app, follow_redirects=False)  # without the lifespan: no Kafka needed
    app.state.engine.dispose()


def pay(checkout: TestClient, offer_id: str, email: str) -> int:
    started = checkout.post(f"/offers/{offer_id}/checkout", data={"email": email})
    assert started.status_code == 303, started.text
    return checkout.post(f"{started.headers['location']}/pay", data={"card_number": "4242424242424242"}).status_code


def test_payments_go_through_on_a_pool_of_one_connection(checkout):
    offer = checkout.post("/admin/offers", headers=ADMIN, json={
        "name": "Course", "product_ids": ["prod_1"], "price": {"amount": 4900, "currency": "EUR"}})
    assert offer.status_code == 201, offer.text
    assert pay(checkout, offer.json()["id"], "ann@example.com") == 303

    answers: list[int] = []
    buyers = [threading.Thread(target=lambda n=n: answers.append(pay(checkout, offer.json()["id"], f"b{n}@example.com")))
              for n in range(3)]
    for buyer in buyers:
        buyer.start()
    for buyer in buyers:
        buyer.join()
    assert answers == [303, 303, 303]
    assert len(checkout.get("/admin/purchases", headers=ADMIN).json()) == 4
