"""A payment is either a purchase or given back, never both: a returned payment completes nothing
later, whatever amount a later event names, and a payment that completed its attempt is never
recorded as returned."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import Session, select

from postsale.checkout import handlers, offers, returns
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import CatalogProduct, CheckoutSession, Purchase, ReturnedPayment
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.billing import BillingTerms
from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from postsale.runtime.settings import PublicUrls

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'checkout.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"checkout_ret_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


@pytest.fixture
def paid(engine):
    """An attempt for 49.00 EUR, and a sandbox payment of that amount."""
    provider = SandboxProvider(engine, action_base_url="http://checkout.test")
    with Session(engine) as session:
        session.add(CatalogProduct(id="prod_course", name="Course", delivery_type="membership"))
        offer = offers.create_offer(session, name="Course", product_ids=["prod_course"],
                                    terms=BillingTerms("one_time", 4900, "EUR"))
        checkout = handlers.start_checkout(session, offer=offer, email="ann@example.com")
        session.commit()
        checkout_id = checkout.id
    result = provider.start_payment(attempt_id=checkout_id, amount=4900, currency="EUR", email="ann@example.com",
                                    idempotency_key=f"{checkout_id}:pay", details={"card_number": "4242424242424242"})
    return checkout_id, result


def complete(engine, checkout_id, result) -> None:
    with Session(engine) as session:
        handlers.complete_first_payment(session, session.get(CheckoutSession, checkout_id), provider="sandbox",
                                        result=result, secret_key="k" * 32, urls=PublicUrls())
        session.commit()


def test_a_returned_payment_never_completes_its_attempt_later(engine, paid):
    checkout_id, result = paid
    with Session(engine) as session:
        returns.record_return(session, session.get(CheckoutSession, checkout_id), result, provider="sandbox",
                              reason="The order changed.", now=utcnow())
        session.commit()

    with pytest.raises(handlers.PaymentMismatch, match="given back already"):
        complete(engine, checkout_id, result)  # the amount and currency the attempt charges

    with Session(engine) as session:
        assert session.exec(select(Purchase)).all() == []
        assert session.get(CheckoutSession, checkout_id).status != "paid"


def test_a_payment_that_completed_its_attempt_is_never_returned(engine, paid):
    checkout_id, result = paid
    complete(engine, checkout_id, result)

    with Session(engine) as session:
        returned = returns.record_return(session, session.get(CheckoutSession, checkout_id), result,
                                         provider="sandbox", reason="The order changed.", now=utcnow())
        session.commit()

    assert returned is None
    with Session(engine) as session:
        assert session.exec(select(ReturnedPayment)).all() == []
        assert [p.checkout_session_id for p in session.exec(select(Purchase)).all()] == [checkout_id]
