"""Nothing twice in billing, on PostgreSQL: two schedulers racing for one renewal charge it once;
a crash between the provider's answer and the commit resolves to one payment; a refund webhook
that comes before its payment waits for it."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from postsale.checkout import billing, handlers, offers
from postsale.checkout.adapters.payments.port import ProviderRefund, WebhookEvent
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import (BillingJob, CatalogProduct, ChargeAttempt, CheckoutSession, Payment, ProviderEvent,
                                               Purchase, Refund, SandboxPayment)
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.billing import BillingTerms
from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler
from postsale.runtime.settings import PublicUrls

pytestmark = pytest.mark.integration


class CountingSandbox(SandboxProvider):
    """The sandbox, counting the charges asked of it (a slow provider, so the race is real)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.charges = 0
        self.lock = threading.Lock()

    def charge_saved(self, **kwargs):
        with self.lock:
            self.charges += 1
        threading.Event().wait(0.2)
        return super().charge_saved(**kwargs)


@pytest.fixture
def engine(postgres):
    engine = make_engine(postgres.create_database(f"checkout_billing_{uuid.uuid4().hex[:8]}"))
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def subscribe(engine, provider) -> str:
    """A monthly subscription paid with the success card; returns its id, its renewal due now."""
    with Session(engine) as session:
        session.add(CatalogProduct(id="prod_club", name="Club", delivery_type="membership"))
        offer = offers.create_offer(session, name="Club", product_ids=["prod_club"],
                                      terms=BillingTerms("subscription", 1900, "EUR", interval="month"))
        checkout = handlers.start_checkout(session, offer=offer, email="ann@example.com")
        session.commit()
        result = provider.start_payment(attempt_id=checkout.id, amount=1900, currency="EUR", email=checkout.email,
                                        idempotency_key=f"{checkout.id}:pay", details={"card_number": "4242424242424242"})
        [purchase] = handlers.complete_first_payment(session, checkout, provider="sandbox", result=result,
                                                     secret_key="k" * 32, urls=PublicUrls(),
                                                     now=utcnow() - timedelta(days=40))
        session.commit()
        return purchase.subscription_id


def test_two_schedulers_racing_for_one_renewal_charge_it_once(engine):
    provider = CountingSandbox(engine, action_base_url="http://checkout.test")
    subscription_id = subscribe(engine, provider)
    schedulers = [Scheduler(engine, "billing", BillingJob,
                            lambda s, job, now: billing.run_billing_job(s, job, now, provider=provider))
                  for _ in range(2)]
    threads = [threading.Thread(target=scheduler.run_one) for scheduler in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Session(engine) as session:
        attempts = session.exec(select(ChargeAttempt).where(ChargeAttempt.subscription_id == subscription_id)).all()
        renewals = session.exec(select(Payment).where(Payment.subscription_id == subscription_id)).all()
        pending = session.exec(select(BillingJob).where(BillingJob.done_at.is_(None))).all()
    assert provider.charges == 1 and len(attempts) == 1 and len(renewals) == 1
    assert len(pending) == 1 and pending[0].due_at > utcnow()  # the next renewal, a month on


def test_a_crash_after_the_providers_answer_resolves_to_one_payment(engine, monkeypatch):
    provider = CountingSandbox(engine, action_base_url="http://checkout.test")
    subscription_id = subscribe(engine, provider)
    crashes = iter([True])

    def crash_once(*args, **kwargs):
        if next(crashes, False):
            raise RuntimeError("the process died before its commit")
        return original(*args, **kwargs)

    original = billing.store
    monkeypatch.setattr(billing, "store", crash_once)
    clock = [utcnow()]
    scheduler = Scheduler(engine, "billing", BillingJob,
                          lambda s, job, now: billing.run_billing_job(s, job, now, provider=provider),
                          clock=lambda: clock[0])
    scheduler.run_one()  # charged at the provider, then crashed: nothing recorded
    with Session(engine) as session:
        assert session.exec(select(Payment).where(Payment.subscription_id == subscription_id)).all() == []
    clock[0] += timedelta(hours=1)  # the job's retry is due
    scheduler.run_one()  # again, with the same idempotency key: the provider's same payment
    with Session(engine) as session:
        [renewal] = session.exec(select(Payment).where(Payment.subscription_id == subscription_id)).all()
    assert provider.charges == 2
    with Session(engine) as session:
        charged = session.exec(select(SandboxPayment).where(SandboxPayment.amount == 1900)).all()
    assert len(charged) == 2  # the first payment and one renewal, whatever the retries
    assert renewal.provider_payment_id in {p.id for p in charged}


def test_a_refund_webhook_before_its_payment_waits_and_applies_once_the_payment_is_known(engine):
    provider = SandboxProvider(engine, action_base_url="http://checkout.test")
    with Session(engine) as session:
        session.add(CatalogProduct(id="prod_guide", name="Guide", delivery_type="membership"))
        offer = offers.create_offer(session, name="Guide", product_ids=["prod_guide"],
                                      terms=BillingTerms("one_time", 4900, "EUR"))
        checkout_id = handlers.start_checkout(session, offer=offer, email="bo@example.com").id
        session.commit()
    result = provider.start_payment(attempt_id=checkout_id, amount=4900, currency="EUR", email="bo@example.com",
                                    idempotency_key="k", details={"card_number": "4242424242424242"})
    early = WebhookEvent("evt_refund", "charge.refunded",
                         refunds=(ProviderRefund("re_1", result.payment_id, 1500, "EUR"),))
    with Session(engine) as session:
        assert billing.apply_provider_event(session, early, provider="sandbox", now=utcnow()) is False
        session.add(ProviderEvent(source="sandbox", external_id=early.event_id, type=early.type,
                                  payment_id=result.payment_id, handled=False,
                                  payload={"event_id": early.event_id, "type": early.type,
                                           "refunds": [{"refund_id": "re_1", "payment_id": result.payment_id,
                                                        "amount": 1500, "currency": "EUR"}], "dispute": None}))
        session.commit()
    with Session(engine) as session:
        checkout = session.get(CheckoutSession, checkout_id)
        [purchase] = handlers.complete_first_payment(session, checkout, provider="sandbox", result=result,
                                                     secret_key="k" * 32, urls=PublicUrls())
        session.commit()
        refunds = session.exec(select(Refund)).all()
        assert [(r.purchase_id, r.amount, r.actor) for r in refunds] == [(purchase.id, 1500, "provider")]
        assert session.get(Purchase, purchase.id).refunded == 1500
        assert session.exec(select(ProviderEvent)).one().handled is True
        # The same refund reported again (Stripe repeats webhooks) changes nothing.
        assert billing.apply_provider_event(session, early, provider="sandbox", now=utcnow()) is True
        session.commit()
        assert len(session.exec(select(Refund)).all()) == 1
