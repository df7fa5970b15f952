"""The local PostgreSQL and stripe-mock runners start real servers that real clients can use."""

from __future__ import annotations

import psycopg
import pytest
import stripe


pytestmark = pytest.mark.integration


@pytest.fixture
def stripe_client(stripe_mock):
    return stripe.StripeClient("sk_test_123", base_addresses={"api": stripe_mock.api_base})


def _libpq(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_postgres_databases_are_separate(postgres):
    urls = {name: postgres.create_database(name) for name in ("orders", "payments")}
    assert urls["orders"] == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/orders"
    assert postgres.create_database("orders") == urls["orders"]  # idempotent

    for name, url in urls.items():
        with psycopg.connect(_libpq(url)) as conn:
            conn.execute("CREATE TABLE note (body text NOT NULL)")
            conn.execute("INSERT INTO note VALUES (%s)", (f"hello from {name}",))
    for name, url in urls.items():
        with psycopg.connect(_libpq(url)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
            assert conn.execute("SELECT body FROM note").fetchall() == [(f"hello from {name}",)]


def test_stripe_mock_creates_payment_intent(stripe_client):
    intent = stripe_client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "eur", "metadata": {"order_id": "o-1"}})
    assert intent.id.startswith("pi_")
    assert (intent.object, intent.amount, intent.currency) == ("payment_intent", 4200, "eur")
    assert intent.client_secret


def test_stripe_mock_creates_customer(stripe_client):
    customer = stripe_client.v1.customers.create(params={"email": "ann@example.com", "name": "Ann"})
    assert customer.id.startswith("cus_")
    assert (customer.email, customer.name) == ("ann@example.com", "Ann")


def test_stripe_mock_validates_requests(stripe_client):
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.create(params={"currency": "eur"})  # amount is required
