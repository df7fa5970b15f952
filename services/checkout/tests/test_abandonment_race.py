"""Paying an attempt and counting it as abandoned at the same moment: the abandonment run holds the
attempt's row (PostgreSQL's row lock, SQLite's write lock), so it waits for the payment's commit,
then finds the attempt paid: no `CheckoutAbandoned` for what was bought."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from postsale.checkout import handlers, offers, recovery
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import CatalogProduct, CheckoutRecovery, CheckoutSession, Purchase
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.billing import BillingTerms
from postsale.contracts import PurchaseCompleted
from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.outbox import OutboxMessage
from postsale.runtime.migrations import migrate
from postsale.runtime.settings import PublicUrls

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'checkout.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"checkout_race_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def test_an_attempt_paid_while_its_abandonment_runs_is_never_abandoned(engine):
    provider = SandboxProvider(engine, action_base_url="http://checkout.test")
    with Session(engine) as session:
        session.add(CatalogProduct(id="prod_course", name="Course", delivery_type="membership"))
        offer = offers.create_offer(session, name="Course", product_ids=["prod_course"],
                                    terms=BillingTerms("one_time", 4900, "EUR"))
        checkout = handlers.start_checkout(session, offer=offer, email="ann@example.com",
                                           now=utcnow() - timedelta(hours=2))  # its recovery delay is over
        session.commit()
        checkout_id = checkout.id
        row_id = session.exec(select(CheckoutRecovery.id)).one()
    result = provider.start_payment(attempt_id=checkout_id, amount=4900, currency="EUR", email="ann@example.com",
                                    idempotency_key=f"{checkout_id}:pay", details={"card_number": "4242424242424242"})

    # The payment's transaction has recorded the purchase and holds the attempt; it has not committed.
    paying = Session(engine)
    handlers.complete_first_payment(paying, paying.get(CheckoutSession, checkout_id), provider="sandbox",
                                    result=result, secret_key="k" * 32, urls=PublicUrls())
    paying.flush()

    # The abandonment run, on a recovery row claimed just before: it must wait for the attempt.
    holding = threading.Event()
    runner = threading.current_thread

    def on_statement(_conn, _cursor, statement, *_args) -> None:
        held = "FOR UPDATE" in statement or statement.lstrip().upper().startswith("UPDATE")
        if runner().name == "abandonment" and "checkout_sessions" in statement and held:
            holding.set()

    event.listen(engine, "before_cursor_execute", on_statement)

    def run_abandonment() -> None:
        with Session(engine) as session:
            row = session.get(CheckoutRecovery, row_id)
            recovery.run_recovery(session, row, utcnow(), provider=provider, urls=PublicUrls())
            session.commit()

    thread = threading.Thread(target=run_abandonment, name="abandonment")
    thread.start()
    assert holding.wait(30), "the abandonment run read the attempt without holding it"
    paying.commit()
    paying.close()
    thread.join(30)
    assert not thread.is_alive()
    event.remove(engine, "before_cursor_execute", on_statement)

    with Session(engine) as session:
        assert [p.checkout_session_id for p in session.exec(select(Purchase)).all()] == [checkout_id]
        published = [json.loads(m.headers)["ce_type"] for m in session.exec(select(OutboxMessage)).all()]
        row = session.get(CheckoutRecovery, row_id)
    assert published == [PurchaseCompleted.event_type], published
    assert row.abandoned is False
