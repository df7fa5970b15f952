"""A dispute that arrives while its payment is being recorded: the webhook and the payment's
transaction hold the payment id (PostgreSQL's advisory lock, SQLite's write lock), so the webhook
either finds the payment or leaves a waiting event the payment finds. The dispute is never lost."""

from __future__ import annotations

import json
import threading
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from postsale.checkout import handlers, offers
from postsale.checkout.adapters.payments.port import ProviderDispute, WebhookEvent
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import CatalogProduct, CheckoutSession, Dispute, ProviderEvent, Purchase
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.entrypoints.webhooks import handle_provider_event
from postsale.contracts import DisputeOpened, PurchaseCompleted
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
        url = request.getfixturevalue("postgres").create_database(f"checkout_wait_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def test_a_dispute_arriving_while_its_payment_is_recorded_is_applied(engine):
    provider = SandboxProvider(engine, action_base_url="http://checkout.test")
    app = SimpleNamespace(state=SimpleNamespace(payments=provider, engine=engine, secret_key="k" * 32,
                                                urls=PublicUrls()))
    with Session(engine) as session:
        session.add(CatalogProduct(id="prod_course", name="Course", delivery_type="membership"))
        offer = offers.create_offer(session, name="Course", product_ids=["prod_course"],
                                    terms=BillingTerms("one_time", 4900, "EUR"))
        checkout = handlers.start_checkout(session, offer=offer, email="ann@example.com")
        session.commit()
        checkout_id = checkout.id
    result = provider.start_payment(attempt_id=checkout_id, amount=4900, currency="EUR", email="ann@example.com",
                                    idempotency_key=f"{checkout_id}:pay", details={"card_number": "4242424242424242"})

    # The payment's transaction has recorded the purchase and looked for waiting events (none yet);
    # it has not committed.
    paying = Session(engine)
    handlers.complete_first_payment(paying, paying.get(CheckoutSession, checkout_id), provider="sandbox",
                                    result=result, secret_key="k" * 32, urls=PublicUrls())
    paying.flush()

    # The dispute's webhook now: it goes on until it waits for the payment id, or to its end.
    reached = threading.Event()
    runner = threading.current_thread
    sqlite = engine.dialect.name == "sqlite"

    def on_statement(_conn, _cursor, statement, *_args) -> None:
        holds = ("INSERT INTO provider_events" in statement) if sqlite else "pg_advisory_xact_lock" in statement
        if runner().name == "webhook" and holds:
            reached.set()

    event.listen(engine, "before_cursor_execute", on_statement)
    dispute = WebhookEvent("evt_dispute_1", "charge.dispute.created",
                           dispute=ProviderDispute("dp_1", result.payment_id, 4900, "EUR", "open", "fraudulent"))
    answers: list[str] = []

    def deliver() -> None:
        try:
            answers.append(handle_provider_event(app, dispute))
        finally:
            reached.set()

    thread = threading.Thread(target=deliver, name="webhook")
    thread.start()
    assert reached.wait(30)
    paying.commit()
    paying.close()
    thread.join(30)
    assert not thread.is_alive()
    event.remove(engine, "before_cursor_execute", on_statement)

    assert answers == ["accepted"]
    with Session(engine) as session:
        purchase = session.exec(select(Purchase)).one()
        disputes = session.exec(select(Dispute)).all()
        waiting = session.exec(select(ProviderEvent).where(ProviderEvent.handled.is_(False))).all()  # type: ignore[attr-defined]
        published = [json.loads(m.headers)["ce_type"] for m in session.exec(select(OutboxMessage)).all()]
    assert [(d.purchase_id, d.provider_dispute_id, d.status) for d in disputes] == [(purchase.id, "dp_1", "open")]
    assert waiting == []
    assert published == [PurchaseCompleted.event_type, DisputeOpened.event_type], published
