"""The emails of billing after the first payment, as notifications queues them from checkout's events:
failed payments (to the customer and the seller), dunning's end, receipts, refunds, the seller's
notification of each sale, and the reminders before a trial ends and before a yearly renewal.

Events go through the service's own subscription list and inbox (as the consumer hands them
over); reminders run on the shared scheduler with a clock the test moves."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from postsale.contracts import (
    Event,
    Money,
    PaymentFailed,
    PaymentSucceeded,
    PurchaseCompleted,
    PurchasedProduct,
    PurchaseRefunded,
    SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone,
    SubscriptionCancelled,
    SubscriptionPaused,
    SubscriptionResumed,
)
from postsale.notifications import billing
from postsale.notifications.adapters.tables import Email, Reminder, SubscriptionState
from postsale.notifications.config import MIGRATIONS_DIR, seller_addresses
from postsale.notifications.entrypoints.app import create_app
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.clock import as_utc
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SHOP = "https://shop.test"
BILLING = f"{SHOP}/billing"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture(autouse=True)
def public_urls(monkeypatch):
    monkeypatch.setenv("POSTSALE_CHECKOUT_URL", SHOP)
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def reminders(engine, clock) -> Scheduler:
    return Scheduler(engine, billing.REMINDERS, Reminder, billing.send_reminder, clock=clock)


def deliver(engine, event: Event, event_id: str | None = None) -> bool:
    """Hands the event to the use case the service subscribes it to, through the inbox."""
    subscription = next(s for s in SUBSCRIPTIONS if type(event) in s.handlers)
    return apply_once(engine, subscription.consumer_name, subscription.handlers[type(event)], event,
                      event_id or uuid.uuid4().hex)


def emails(engine) -> dict[str, Email]:
    with Session(engine) as session:
        return {e.key: e for e in session.exec(select(Email)).all()}


def reminder_rows(engine) -> dict[str, Reminder]:
    with Session(engine) as session:
        return {r.id: r for r in session.exec(select(Reminder)).all()}


def purchase(*, subscription_id: str | None = "sub_1", trial_days: int | None = None, period_days: int = 30,
             purchase_id: str = "pur_1", **fields) -> PurchaseCompleted:
    trial_ends_at = T0 + timedelta(days=trial_days) if trial_days else None
    return PurchaseCompleted(**{
        "purchase_id": purchase_id, "customer_id": "cus_1", "email": "ann@example.com", "offer_id": "off_1",
        "offer_name": "Pro Membership",
        "products": [PurchasedProduct(product_id="prd_1", name="The Course", delivery_type="membership")],
        "amount": Money(amount=0 if trial_days else 1900, currency="EUR"), "provider": "sandbox",
        "provider_payment_id": "" if trial_days else "sbx_1", "completed_at": T0, "new_customer": True,
        "subscription_id": subscription_id, "trial_ends_at": trial_ends_at,
        "next_payment_at": (trial_ends_at or T0 + timedelta(days=period_days)) if subscription_id else None,
        **fields})


def billing_fields(subscription_id: str = "sub_1", **fields) -> dict:
    return {"subscription_id": subscription_id, "billing": "subscription", "purchase_id": "pur_1",
            "customer_id": "cus_1", "email": "ann@example.com", "offer_id": "off_1", **fields}


def failed(attempt: int, *, retry_in_days: int | None, payment_id: str = "att_7", **fields) -> PaymentFailed:
    failed_at = T0 + timedelta(days=30 + (attempt - 1) * 2)
    return PaymentFailed(**billing_fields(**fields), payment_id=payment_id, kind="renewal",
                         amount=Money(amount=1900, currency="EUR"), attempt=attempt,
                         next_retry_at=failed_at + timedelta(days=retry_in_days) if retry_in_days else None,
                         failure_message="Your card was declined.", failed_at=failed_at)


def paid(period_start: datetime, period_end: datetime, *, payment_id: str = "pay_2", amount: int = 1900,
         **fields) -> PaymentSucceeded:
    return PaymentSucceeded(**billing_fields(**fields), payment_id=payment_id, kind="renewal",
                            amount=Money(amount=amount, currency="EUR"), period_start=period_start,
                            period_end=period_end, paid_at=period_start)


def cancelled(reason: str | None, *, at: datetime = T0 + timedelta(days=37), **fields) -> SubscriptionCancelled:
    return SubscriptionCancelled(**billing_fields(**fields), effective_at=at, actor="system", reason=reason,
                                 cancelled_at=at)


def text_and_html(email: Email) -> str:
    return email.text_body + email.html_body


# --- failed payments ------------------------------------------------------------------------


def test_a_failed_renewal_emails_the_customer_once_with_the_retry_and_a_button_to_update_the_card(engine):
    deliver(engine, purchase())
    event = failed(1, retry_in_days=3)
    event_id = uuid.uuid4().hex
    assert deliver(engine, event, event_id)
    assert not deliver(engine, event, event_id)  # redelivered: the inbox knows it
    deliver(engine, event)  # republished under another id: the key keeps it to one email

    customer = [e for e in emails(engine).values() if e.template == "payment_failed"]
    assert [(e.key, e.to, e.customer_id) for e in customer] == [
        ("payment-failed:sub_1:att_7:1", "ann@example.com", "cus_1")]
    [email] = customer
    assert email.subject == "Your payment for Pro Membership did not go through"
    assert "19.00 EUR" in email.text_body and "the renewal of Pro Membership on 01 April 2026" in email.text_body
    assert "Your card was declined." in email.text_body
    assert "We will try again on 04 April 2026, and you keep your access meanwhile" in email.text_body
    assert BILLING in email.text_body
    assert f'<a href="{BILLING}"' in email.html_body and "Update your card" in email.html_body


def test_each_attempt_has_its_own_email_and_the_last_says_no_retry_is_left(engine):
    deliver(engine, purchase())
    for event in (failed(1, retry_in_days=3), failed(2, retry_in_days=2), failed(3, retry_in_days=None)):
        deliver(engine, event)
    queued = emails(engine)
    assert sorted(k for k in queued if k.startswith("payment-failed:")) == [
        "payment-failed:sub_1:att_7:1", "payment-failed:sub_1:att_7:2", "payment-failed:sub_1:att_7:3"]
    last = queued["payment-failed:sub_1:att_7:3"]
    assert "We will not try again, so Pro Membership ends here" in last.text_body
    assert "try again on" not in last.text_body and BILLING in last.text_body


def test_the_seller_hears_of_each_failed_payment_and_of_each_sale_at_every_address_once(engine, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_SELLER_EMAILS", "sales@shop.test, Owner@Shop.test")
    deliver(engine, purchase())
    event = failed(1, retry_in_days=3)
    deliver(engine, event)
    deliver(engine, event)
    deliver(engine, purchase())

    queued = emails(engine)
    seller = sorted((e.key, e.to, e.customer_id) for e in queued.values() if e.template.startswith("seller_"))
    assert seller == [
        ("seller-payment-failed:sub_1:att_7:1:owner@shop.test", "Owner@Shop.test", None),
        ("seller-payment-failed:sub_1:att_7:1:sales@shop.test", "sales@shop.test", None),
        ("seller-sale:pur_1:owner@shop.test", "Owner@Shop.test", None),
        ("seller-sale:pur_1:sales@shop.test", "sales@shop.test", None),
    ]
    failure = queued["seller-payment-failed:sub_1:att_7:1:sales@shop.test"]
    assert failure.subject == "Payment failed: ann@example.com, Pro Membership (attempt 1)"
    for fact in ("ann@example.com (cus_1)", "Pro Membership (sub_1)", "19.00 EUR, attempt 1, on 01 April 2026",
                 "Reason: Your card was declined.", "The next attempt is on 04 April 2026"):
        assert fact in failure.text_body
    sale = queued["seller-sale:pur_1:sales@shop.test"]
    assert sale.subject == "New sale: Pro Membership, 19.00 EUR"
    assert "Paid: 19.00 EUR, on 02 March 2026" in sale.text_body
    assert "ann@example.com (new, cus_1)" in sale.text_body and "- The Course" in sale.text_body
    # The customer's own emails are not addressed to the seller.
    assert queued["purchase-confirmation:pur_1"].to == queued["payment-failed:sub_1:att_7:1"].to == "ann@example.com"


def test_without_seller_addresses_the_seller_gets_nothing(engine):
    deliver(engine, purchase())
    deliver(engine, failed(1, retry_in_days=3))
    assert not [k for k in emails(engine) if k.startswith("seller-")]


def test_seller_addresses_are_read_as_a_list_and_a_bad_one_refuses_to_start(monkeypatch):
    assert seller_addresses(" a@shop.test,, b@shop.test ,A@SHOP.test,") == ("a@shop.test", "b@shop.test")
    assert seller_addresses("") == ()
    monkeypatch.setenv("NOTIFICATIONS_ADMIN_TOKEN", "a-token-of-sixteen-or-more")
    monkeypatch.setenv("NOTIFICATIONS_SELLER_EMAILS", "sales@shop.test, sales at shop.test")
    with pytest.raises(ValidationError) as refused:
        create_app()
    assert "NOTIFICATIONS_SELLER_EMAILS: 'sales at shop.test' is not an email address" in str(refused.value)


# --- the end of dunning, receipts, refunds --------------------------------------------------


def test_when_dunning_gives_up_the_customer_learns_that_access_ends_and_how_to_come_back(engine):
    deliver(engine, purchase())
    event = cancelled("payment failed")
    deliver(engine, event)
    deliver(engine, event)
    deliver(engine, cancelled("customer request", subscription_id="sub_2"))

    ended = [e for e in emails(engine).values() if e.template == "subscription_cancelled"]
    assert [(e.key, e.to) for e in ended] == [("subscription-cancelled:sub_1", "ann@example.com")]
    [email] = ended
    assert email.subject == "Your subscription has ended: Pro Membership"
    assert "cancelled on 08 April 2026. Your access to what it included ends with it." in email.text_body
    assert f"{SHOP}/offers/off_1" in email.text_body and f'href="{SHOP}/offers/off_1"' in email.html_body
    assert BILLING in email.text_body


def test_each_renewal_sends_a_receipt_with_its_period_and_the_link_to_the_receipts(engine):
    deliver(engine, purchase())
    event = paid(T0 + timedelta(days=30), T0 + timedelta(days=61), amount=1710)
    deliver(engine, event)
    deliver(engine, event)

    receipts = [e for e in emails(engine).values() if e.template == "renewal_receipt"]
    assert [e.key for e in receipts] == ["renewal-receipt:sub_1:pay_2"]
    [receipt] = receipts
    assert receipt.subject == "Your receipt: 17.10 EUR for Pro Membership"
    assert "It pays for 01 April 2026 to 02 May 2026." in receipt.text_body
    assert BILLING in receipt.text_body and "See your receipts" in receipt.html_body
    assert reminder_rows(engine) == {}  # a monthly period: no renewal reminder


def test_a_refund_is_confirmed_once_per_refund_saying_what_happens_to_access(engine):
    deliver(engine, purchase(subscription_id=None))

    def refund(refund_id: str, amount: int, total: int, full: bool) -> PurchaseRefunded:
        return PurchaseRefunded(refund_id=refund_id, purchase_id="pur_1", customer_id="cus_1", email="ann@example.com",
                                amount=Money(amount=amount, currency="EUR"),
                                total_refunded=Money(amount=total, currency="EUR"), full=full, actor="seller",
                                refunded_at=T0 + timedelta(days=2))

    first = refund("re_1", 500, 500, False)
    deliver(engine, first)
    deliver(engine, first)
    deliver(engine, refund("re_2", 400, 900, False))
    deliver(engine, refund("re_3", 1000, 1900, True))

    queued = emails(engine)
    assert sorted(k for k in queued if k.startswith("refund-")) == [
        "refund-confirmation:re_1", "refund-confirmation:re_2", "refund-confirmation:re_3"]
    partial, second, full = (queued[f"refund-confirmation:re_{n}"] for n in (1, 2, 3))
    assert partial.subject == "Your refund of 5.00 EUR: Pro Membership" and partial.to == "ann@example.com"
    assert "We refunded 5.00 EUR of your purchase of Pro Membership" in partial.text_body
    assert "You keep your access to what you bought." in partial.text_body and "In all" not in partial.text_body
    assert "In all, 9.00 EUR of it is refunded now." in second.text_body
    assert full.subject == "Your refund of 10.00 EUR: Pro Membership"
    assert "Your access to what you bought ends with this refund." in full.text_body


# --- reminders ------------------------------------------------------------------------------


def test_a_trial_is_reminded_three_days_before_it_ends_and_only_once(engine, clock, reminders):
    trial = purchase(trial_days=14)
    deliver(engine, trial)
    deliver(engine, trial)
    assert {k: as_utc(r.due_at) for k, r in reminder_rows(engine).items()} == {
        "trial-ending:sub_1": T0 + timedelta(days=11)}

    clock.move_to(T0 + timedelta(days=11) - timedelta(minutes=1))
    assert reminders.run_due() == 0 and "trial-ending:sub_1" not in emails(engine)
    clock.move_to(T0 + timedelta(days=11))
    assert reminders.run_due() == 1
    clock.move_to(T0 + timedelta(days=12))
    assert reminders.run_due() == 0

    email = emails(engine)["trial-ending:sub_1"]
    assert (email.template, email.to, email.customer_id) == ("trial_ending", "ann@example.com", "cus_1")
    assert email.subject == "Your free trial ends on 16 March 2026"
    assert "Your free trial of Pro Membership ends on 16 March 2026" in email.text_body
    assert BILLING in email.text_body and f'href="{BILLING}"' in email.html_body


def test_a_yearly_subscription_is_reminded_a_week_before_each_renewal(engine, clock, reminders):
    deliver(engine, purchase(period_days=365))
    deliver(engine, purchase(subscription_id="sub_m", purchase_id="pur_m", period_days=31))  # monthly: none
    first_renewal = T0 + timedelta(days=365)
    assert {k: as_utc(r.due_at) for k, r in reminder_rows(engine).items()} == {
        "renewal-reminder:sub_1:2027-03-02": first_renewal - timedelta(days=7)}

    clock.move_to(first_renewal - timedelta(days=7))
    assert reminders.run_due() == 1
    email = emails(engine)["renewal-reminder:sub_1:2027-03-02"]
    assert email.subject == "Your subscription renews on 02 March 2027"
    assert "Pro Membership renews on 02 March 2027 for another year" in email.text_body
    assert BILLING in email.text_body

    # The renewal is paid: the next year's reminder is planned from its period, with its amount.
    second_renewal = first_renewal.replace(year=2028)  # a leap year: 366 days
    deliver(engine, paid(first_renewal, second_renewal, amount=19000))
    clock.move_to(second_renewal - timedelta(days=7))
    assert reminders.run_due() == 1
    again = emails(engine)["renewal-reminder:sub_1:2028-03-02"]
    assert "renews on 02 March 2028" in again.text_body and "(190.00 EUR last time)" in again.text_body


@pytest.mark.parametrize("since", ["cancelled", "cancellation scheduled", "paused", "paused and resumed"])
def test_a_subscription_cancelled_or_paused_since_gets_no_reminder(engine, clock, reminders, since):
    deliver(engine, purchase(period_days=365))
    deliver(engine, purchase(subscription_id="sub_t", purchase_id="pur_t", trial_days=14))
    day = T0 + timedelta(days=5)
    for subscription_id in ("sub_1", "sub_t"):
        fields = billing_fields(subscription_id)
        if since == "cancelled":
            deliver(engine, SubscriptionCancelled(**fields, effective_at=day, actor="customer", cancelled_at=day))
        elif since == "cancellation scheduled":
            deliver(engine, SubscriptionCancellationScheduled(
                **fields, effective_at=T0 + timedelta(days=365 if subscription_id == "sub_1" else 14),
                actor="customer", scheduled_at=day))
        else:
            deliver(engine, SubscriptionPaused(**fields, actor="seller", paused_at=day))
            if since == "paused and resumed":
                deliver(engine, SubscriptionResumed(**fields, actor="seller", resumed_at=day + timedelta(days=1)))

    clock.move_to(T0 + timedelta(days=364))
    assert reminders.run_due() == 2
    assert all(r.done_at is not None for r in reminder_rows(engine).values())
    assert not [k for k in emails(engine) if k.startswith(("renewal-reminder:", "trial-ending:"))]


def test_an_undone_cancellation_gets_its_reminder_after_all(engine, clock, reminders):
    deliver(engine, purchase(period_days=365))
    fields = billing_fields()
    deliver(engine, SubscriptionCancellationScheduled(**fields, effective_at=T0 + timedelta(days=365),
                                                      actor="customer", scheduled_at=T0 + timedelta(days=5)))
    deliver(engine, SubscriptionCancellationUndone(**fields, actor="customer", undone_at=T0 + timedelta(days=6)))
    clock.move_to(T0 + timedelta(days=358))
    assert reminders.run_due() == 1
    assert "renewal-reminder:sub_1:2027-03-02" in emails(engine)


def test_billing_events_that_overtake_their_purchase_are_kept_and_named_once_it_arrives(engine):
    deliver(engine, failed(1, retry_in_days=3))
    deliver(engine, cancelled("payment failed"))
    deliver(engine, purchase(period_days=365))  # the purchase topic was slower

    queued = emails(engine)
    assert queued["payment-failed:sub_1:att_7:1"].subject == "Your payment for your subscription did not go through"
    with Session(engine) as session:
        state = session.get(SubscriptionState, "sub_1")
        assert (state.status, state.offer_name, state.billing) == ("cancelled", "Pro Membership", "subscription")
