"""The card-expiry warning: `CardExpiring` once per card and billing, about 30 days before the saved
card stops working, when the billing will still charge it after that.

Each new card of a subscription or payment plan puts a check on the schedule, due at once (so
does resuming a paused billing, and migration 0006 for the billings saved before checks existed):
it reads the card from the provider (brand, last 4, expiry), records it on the subscription and
moves itself to the warning time. A newer card makes the older card's check stale; a billing
that ended, or will take no payment the card would fail, gets no warning. Each runs inside the
caller's transaction and never commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Session, select

from postsale.checkout import billing
from postsale.checkout.adapters.payments.port import PaymentProvider
from postsale.checkout.adapters.tables import CardExpiryCheck, CardExpiryNotice, Subscription
from postsale.checkout.domain import card_expiry
from postsale.contracts import CardExpiring
from postsale.runtime.messaging import publish_later
from postsale.runtime.scheduler import end_pending, wake

SCHEDULER = "card-expiry-scheduler"


def _schedule(session: Session, subscription: Subscription, due_at: datetime, now: datetime) -> None:
    """The subscription's one pending check, at `due_at`; any older one is dropped."""
    end_pending(session, CardExpiryCheck, CardExpiryCheck.subscription_id == subscription.id, now=now)
    session.add(CardExpiryCheck(id=f"cx_{uuid.uuid4().hex[:16]}", subscription_id=subscription.id,
                                customer_id=subscription.customer_id,
                                payment_method_id=subscription.payment_method_id or "", due_at=due_at))
    wake(session, SCHEDULER)


def watch_card(session: Session, subscription: Subscription, now: datetime) -> None:
    """A subscription got a card (its first payment, or the customer saved a new one): forget the
    old card's details and look at the new card at once. Nothing for a billing without a card."""
    subscription.card_brand = subscription.card_last4 = None
    subscription.card_exp_month = subscription.card_exp_year = None
    session.add(subscription)
    if subscription.payment_method_id:
        _schedule(session, subscription, now, now)


def watch_again(session: Session, subscription: Subscription, now: datetime) -> None:
    """The billing charges again (resumed after a pause, whose check ended with no warning): its
    card is looked at again at once, what is known of it kept. A card already warned about is not
    warned about twice."""
    if subscription.payment_method_id:
        _schedule(session, subscription, now, now)


def run_card_check(session: Session, check: CardExpiryCheck, now: datetime, *, provider: PaymentProvider) -> None:
    """Started by the scheduler: reads an unknown card from the provider and moves the check to the
    warning time; at the warning time publishes `CardExpiring`, once per card and billing."""
    subscription = session.get(Subscription, check.subscription_id, with_for_update=True)
    if subscription is None or subscription.payment_method_id != check.payment_method_id:
        return  # the customer saved another card since: its own check runs
    if subscription.card_exp_year is None:
        card = provider.saved_card(check.payment_method_id)
        if card is None:
            return  # not a card (or unknown to the provider): nothing expires
        subscription.card_brand, subscription.card_last4 = card.brand, card.last4
        subscription.card_exp_month, subscription.card_exp_year = card.exp_month, card.exp_year
        session.add(subscription)
    when = card_expiry.warn_at(subscription.card_exp_month, subscription.card_exp_year, now)
    if when > now:
        _schedule(session, subscription, when, now)  # ends this check too, as every pending one
        return
    card_ends = card_expiry.card_ends_at(subscription.card_exp_month, subscription.card_exp_year)
    fails = card_expiry.payment_the_card_fails(billing.cycle_of(session, subscription), card_ends)
    if fails is None or _noticed(session, subscription):
        return
    session.add(CardExpiryNotice(subscription_id=subscription.id, payment_method_id=check.payment_method_id,
                                 noticed_at=now))
    publish_later(session, CardExpiring(
        **billing.billing_fields(session, subscription), card_brand=subscription.card_brand,
        card_last4=subscription.card_last4, card_exp_month=subscription.card_exp_month,
        card_exp_year=subscription.card_exp_year, next_payment_at=fails, noticed_at=now), source=billing.SOURCE)


def _noticed(session: Session, subscription: Subscription) -> bool:
    return session.exec(select(CardExpiryNotice).where(
        CardExpiryNotice.subscription_id == subscription.id,
        CardExpiryNotice.payment_method_id == subscription.payment_method_id)).first() is not None
