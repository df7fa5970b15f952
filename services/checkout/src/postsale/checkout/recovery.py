"""Abandoned checkouts: a buyer gave an email on a checkout and did not pay within the store's
recovery delay. `CheckoutAbandoned` is published once, by the scheduler that claims the attempt's
recovery row; never for an attempt that was paid (paying drops the row, and the run holds the
attempt's row before it checks again, so a payment committing at that moment is seen).
Notifications decides whether to send the reminder, per the offer's `send_recovery_email`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlencode

from sqlmodel import Session, select

from postsale.checkout import handlers
from postsale.checkout.adapters.payments.port import PaymentProvider
from postsale.checkout.adapters.tables import CheckoutRecovery, CheckoutSession, Customer, Offer
from postsale.checkout.attempt_lock import hold_attempt
from postsale.checkout.domain.quote import Quote
from postsale.contracts import CheckoutAbandoned, Money
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging import publish_later

PAYMENT_ON_ITS_WAY = ("succeeded", "processing")


def resume_url(urls, checkout: CheckoutSession) -> str:
    """The offer's (or cart's) checkout page with the email filled in. It signs no one in."""
    page = f"carts/{checkout.cart_id}" if checkout.cart_id else f"offers/{checkout.offer_id}"
    return f"{urls.checkout_url}/{page}?{urlencode({'email': checkout.email})}"


def _superseded(session: Session, checkout: CheckoutSession) -> bool:
    """The same email came back to the same offer later: it paid there, or that newer attempt's own
    row speaks for it. One reminder per visit, never one for what was bought."""
    later = select(CheckoutSession.id).where(
        CheckoutSession.email == checkout.email, CheckoutSession.offer_id == checkout.offer_id,
        CheckoutSession.cart_id == checkout.cart_id if checkout.cart_id else CheckoutSession.cart_id.is_(None),  # type: ignore[union-attr]
        CheckoutSession.created_at > checkout.created_at)
    return session.exec(later.limit(1)).first() is not None


def _amount(session: Session, checkout: CheckoutSession) -> Money:
    try:
        quote: Quote = handlers.quote(session, checkout)
        return Money(amount=quote.total, currency=quote.currency)
    except handlers.CheckoutError:  # the coupon stopped applying: the price without it
        offer = session.get(Offer, checkout.offer_id)
        return Money(amount=checkout.amount_due if checkout.amount_due is not None else offer.price_amount,
                     currency=offer.currency)


def run_recovery(session: Session, row: CheckoutRecovery, now: datetime, *, provider: PaymentProvider, urls) -> None:
    """Started by the scheduler when the recovery delay of an attempt has passed: publishes
    `CheckoutAbandoned` unless the attempt was paid, its payment is on its way at the provider, or
    the buyer came back to the offer since; releases the coupon redemption the attempt held."""
    checkout = session.get(CheckoutSession, row.checkout_session_id)
    if checkout is None or checkout.status != "open":
        return
    # The provider is asked before the attempt is held, so that its answer never holds up a payment.
    asked = checkout.provider_payment_id
    if asked and _on_its_way(provider, asked):
        return  # the provider's webhook completes it
    hold_attempt(session, checkout)  # a payment committing now is waited for, and seen
    if checkout.status != "open" or _superseded(session, checkout):
        return
    if checkout.provider_payment_id not in (None, asked) and _on_its_way(provider, checkout.provider_payment_id):
        return  # a payment started since
    # A payment started and never confirmed (Stripe's card form left open) held a redemption.
    handlers.release_coupon(session, checkout)
    offer = session.get(Offer, checkout.offer_id)
    customer = session.get(Customer, checkout.email)
    row.abandoned = True
    session.add(row)
    publish_later(session, CheckoutAbandoned(
        checkout_id=_public_id(checkout), email=checkout.email, customer_id=customer.customer_id if customer else None,
        offer_id=offer.id, offer_name=offer.name, amount=_amount(session, checkout),
        resume_url=resume_url(urls, checkout), send_recovery_email=offer.send_recovery_email,
        started_at=as_utc(checkout.created_at), abandoned_at=now), source=handlers.SOURCE)


def _on_its_way(provider: PaymentProvider, payment_id: str) -> bool:
    return provider.payment_result(payment_id).status in PAYMENT_ON_ITS_WAY


def _public_id(checkout: CheckoutSession) -> str:
    """The attempt's id on a topic: derived, never the id itself, which is the buyer's bearer secret."""
    return f"co_{uuid.uuid5(uuid.NAMESPACE_URL, f'{checkout.id}:abandoned').hex[:16]}"

