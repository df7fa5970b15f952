"""The emails of a subscription's or payment plan's life after its first payment: a failed payment
(to the customer and to the seller), the end when dunning gives up, a receipt per renewal or
instalment, and reminders before a trial ends and before a yearly renewal.

Each use case runs inside the caller's transaction and never commits, and every email is keyed,
so a redelivered event sends nothing twice. Every event also moves the subscription's standing
(`SubscriptionState`); a reminder is a row with a due time, run by the scheduler
(`send_reminder`), which looks at that standing then: a subscription cancelled or paused since
gets no reminder.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from sqlmodel import Session

from postsale.contracts import (
    CardExpiring,
    PaymentFailed,
    PaymentSucceeded,
    PurchaseCompleted,
    SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone,
    SubscriptionCancelled,
    SubscriptionPastDue,
    SubscriptionPaused,
    SubscriptionResumed,
)
from postsale.notifications.adapters.tables import Reminder, SubscriptionState
from postsale.notifications.domain import reminders, subscriptions
from postsale.notifications.domain.reminders import Kind
from postsale.notifications.domain.subscriptions import Standing
from postsale.notifications.emails import queue_email, queue_for_sellers
from postsale.runtime.clock import as_utc
from postsale.runtime.scheduler import wake
from postsale.runtime.settings import PublicUrls, from_environment

log = logging.getLogger(__name__)
REMINDERS = "reminder-scheduler"
"""The scheduler that runs `reminders` rows."""
DUNNING_GAVE_UP = "payment failed"
"""Checkout's reason on `SubscriptionCancelled` when the retries of a failed payment ran out."""
BillingEvent = (PaymentFailed | PaymentSucceeded | SubscriptionPastDue | SubscriptionCancellationScheduled
                | SubscriptionCancellationUndone | SubscriptionCancelled | SubscriptionPaused | SubscriptionResumed)
TEMPLATES: dict[str, str] = {"trial_ending": "trial_ending", "renewal": "renewal_reminder"}


def billing_page_url() -> str:
    """The customer's billing page: update the card, cancel, receipts."""
    return f"{from_environment(PublicUrls).checkout_url}/billing"


# --- what checkout's events say -------------------------------------------------------------


def follow_purchase(session: Session, event: PurchaseCompleted) -> None:
    """Part of `PurchaseCompleted`: a purchase that starts a subscription or payment plan starts its
    standing, and plans the reminder before its trial ends or before its first yearly renewal."""
    if event.subscription_id is None:
        return
    state = session.get(SubscriptionState, event.subscription_id, with_for_update=True)
    if state is None:
        state = SubscriptionState(id=event.subscription_id, customer_id=event.customer_id, offer_id=event.offer_id,
                                  status="active", changed_at=event.completed_at)
        _store(state, subscriptions.started(event.completed_at, trial_ends_at=event.trial_ends_at))
    # Its billing events may have come first (another topic): they know the state, this the name.
    state.purchase_id, state.offer_name = event.purchase_id, event.offer_name
    session.add(state)
    if event.trial_ends_at is not None:
        _plan(session, "trial_ending", key=f"trial-ending:{event.subscription_id}",
              due_at=reminders.trial_ending_due(event.trial_ends_at, known_at=event.completed_at),
              moment=event.trial_ends_at, planned_at=event.completed_at, subscription_id=event.subscription_id,
              customer_id=event.customer_id, to=event.email)
    _plan_renewal(session, subscription_id=event.subscription_id, customer_id=event.customer_id, to=event.email,
                  period_start=event.trial_ends_at or event.completed_at, period_end=event.next_payment_at,
                  planned_at=event.completed_at, amount=None, currency=None)


def on_payment_failed(session: Session, event: PaymentFailed, _event_id: str) -> None:
    """Started by `PaymentFailed` (each attempt): tells the customer what failed, when it is tried
    again (or that it is not), with a button to update the card; and tells the seller. Keyed per
    subscription, payment and attempt."""
    state = _follow(session, event, lambda s: subscriptions.payment_failed(s, event.failed_at))
    key = f"{event.subscription_id}:{event.payment_id}:{event.attempt}"
    context = {"payment": event, "name": _name(state), "offer_name": state.offer_name,
               "billing_url": billing_page_url()}
    queue_email(session, key=f"payment-failed:{key}", template="payment_failed", to=event.email,
                customer_id=event.customer_id, **context)
    queue_for_sellers(session, key=f"seller-payment-failed:{key}", template="seller_payment_failed", **context)


def on_payment_succeeded(session: Session, event: PaymentSucceeded, _event_id: str) -> None:
    """Started by `PaymentSucceeded`: the customer's receipt of the renewal or instalment, and the
    reminder before the next renewal when this payment paid for a year or longer."""
    last = (event.kind == "instalment" and event.instalment_number is not None
            and event.instalments_total is not None and event.instalment_number >= event.instalments_total)
    state = _follow(session, event, lambda s: subscriptions.paid(s, event.paid_at, last_instalment=last))
    queue_email(session, key=f"renewal-receipt:{event.subscription_id}:{event.payment_id}", template="renewal_receipt",
                to=event.email, customer_id=event.customer_id, payment=event, name=_name(state),
                offer_name=state.offer_name, billing_url=billing_page_url())
    if not last:
        _plan_renewal(session, subscription_id=event.subscription_id, customer_id=event.customer_id, to=event.email,
                      period_start=event.period_start, period_end=event.period_end, planned_at=event.paid_at,
                      amount=event.amount.amount, currency=event.amount.currency)


def on_subscription_cancelled(session: Session, event: SubscriptionCancelled, _event_id: str) -> None:
    """Started by `SubscriptionCancelled`: its reminders will not be sent; when dunning gave up
    (reason "payment failed"), the customer learns that access ends and how to come back."""
    state = _follow(session, event, lambda s: subscriptions.cancelled(s, event.cancelled_at))
    if (event.reason or "").strip().lower() != DUNNING_GAVE_UP:
        return
    queue_email(session, key=f"subscription-cancelled:{event.subscription_id}", template="subscription_cancelled",
                to=event.email, customer_id=event.customer_id, cancellation=event, name=_name(state),
                offer_name=state.offer_name,
                offer_url=f"{from_environment(PublicUrls).checkout_url}/offers/{event.offer_id}",
                billing_url=billing_page_url())


def queue_card_expiring_email(session: Session, event: CardExpiring, _event_id: str) -> None:
    """Started by `CardExpiring`: the customer learns that the saved card expires before the next
    payment, with a button to the billing page to update it. One email per card and billing."""
    state = session.get(SubscriptionState, event.subscription_id)
    queue_email(session, key=f"card-expiring:{event.subscription_id}:{event.card_last4}:{event.card_exp_year}-"
                             f"{event.card_exp_month:02d}",
                template="card_expiring", to=event.email, customer_id=event.customer_id, card=event,
                name=_name(state) if state else _default_name(event.billing),
                offer_name=state.offer_name if state else None, billing_url=billing_page_url())


def follow_billing_change(session: Session, event: BillingEvent, _event_id: str) -> None:
    """Started by `SubscriptionPastDue`, `SubscriptionPaused`, `SubscriptionResumed`,
    `SubscriptionCancellationScheduled` and `SubscriptionCancellationUndone`: no email, only the
    standing that a reminder consults when it falls due."""
    match event:
        case SubscriptionPastDue():
            _follow(session, event, lambda s: subscriptions.payment_failed(s, event.since))
        case SubscriptionPaused():
            _follow(session, event, lambda s: subscriptions.paused(s, event.paused_at))
        case SubscriptionResumed():
            _follow(session, event, lambda s: subscriptions.resumed(s, event.resumed_at))
        case SubscriptionCancellationScheduled():
            _follow(session, event, lambda s: subscriptions.cancellation_scheduled(
                s, event.scheduled_at, effective_at=event.effective_at))
        case SubscriptionCancellationUndone():
            _follow(session, event, lambda s: subscriptions.cancellation_undone(s, event.undone_at))
        case _:
            raise TypeError(f"not a change of standing: {event.event_type}")


# --- reminders ------------------------------------------------------------------------------


def send_reminder(session: Session, reminder: Reminder, now: datetime) -> None:
    """Run by the scheduler at the reminder's due time: queues its email (keyed by the reminder)
    if it still applies, else does nothing; either way the row is done."""
    state = session.get(SubscriptionState, reminder.subscription_id)
    kind: Kind = reminder.kind  # type: ignore[assignment]
    moment = as_utc(reminder.moment)
    why_not = reminders.why_not_send(kind, moment=moment, planned_at=as_utc(reminder.planned_at),
                                     standing=_standing(state) if state else None, now=now)
    if why_not:
        log.info("reminder %s not sent: %s", reminder.id, why_not)
        return
    queue_email(session, key=reminder.id, template=TEMPLATES[kind], to=reminder.to, customer_id=reminder.customer_id,
                moment=moment, name=_name(state), offer_name=state.offer_name, billing=state.billing,
                amount=reminder.amount, currency=reminder.currency, billing_url=billing_page_url())


def _plan_renewal(session: Session, *, subscription_id: str, customer_id: str, to: str,
                  period_start: datetime | None, period_end: datetime | None, planned_at: datetime,
                  amount: int | None, currency: str | None) -> None:
    due_at = reminders.renewal_due(period_start, period_end, known_at=planned_at)
    if due_at is not None and period_end is not None:
        _plan(session, "renewal", key=f"renewal-reminder:{subscription_id}:{period_end.date().isoformat()}",
              due_at=due_at, moment=period_end, planned_at=planned_at, subscription_id=subscription_id,
              customer_id=customer_id, to=to, amount=amount, currency=currency)


def _plan(session: Session, kind: Kind, *, key: str, due_at: datetime | None, **fields) -> None:
    """Adds the reminder unless it is planned already (its key is its id) or has no due time."""
    if due_at is None or session.get(Reminder, key) is not None:
        return
    session.add(Reminder(id=key, kind=kind, due_at=due_at, **fields))
    wake(session, REMINDERS)


# --- the standing ---------------------------------------------------------------------------


def _follow(session: Session, event: BillingEvent, change: Callable[[Standing], Standing]) -> SubscriptionState:
    """Applies one fact to the subscription's standing, creating it when the purchase has not
    arrived yet (it travels on another topic)."""
    state = session.get(SubscriptionState, event.subscription_id, with_for_update=True)
    if state is None:
        state = SubscriptionState(id=event.subscription_id, customer_id=event.customer_id, offer_id=event.offer_id,
                                  status="active", changed_at=_moment(event))
    state.purchase_id, state.billing = event.purchase_id, event.billing
    _store(state, change(_standing(state)))
    session.add(state)
    return state


def _moment(event: BillingEvent) -> datetime:
    for name in ("failed_at", "paid_at", "since", "cancelled_at", "paused_at", "resumed_at", "scheduled_at",
                 "undone_at"):
        if (value := getattr(event, name, None)) is not None:
            return value
    raise TypeError(f"no moment on {event.event_type}")


def _standing(state: SubscriptionState) -> Standing:
    return Standing(state.status, as_utc(state.changed_at), as_utc(state.cancel_at),  # type: ignore[arg-type]
                    as_utc(state.last_paused_at))


def _store(state: SubscriptionState, standing: Standing) -> None:
    state.status, state.changed_at = standing.status, standing.changed_at
    state.cancel_at, state.last_paused_at = standing.cancel_at, standing.last_paused_at


def _name(state: SubscriptionState) -> str:
    """What the emails call it: the offer's name, once its purchase is known."""
    if state.offer_name:
        return state.offer_name
    return _default_name(state.billing)


def _default_name(billing: str | None) -> str:
    return "your payment plan" if billing == "payment_plan" else "your subscription"
