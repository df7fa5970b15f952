"""Payments an attempt cannot take, given back: the provider took an amount or a currency that is
not what the attempt charges (the buyer changed the order bump after an intent was made, and paid
the old intent in another tab). Such a payment completes nothing, publishes nothing and grants
nothing; it is refunded in full, recorded for the seller with the reason, and the buyer is told.

Once per provider payment: the row is unique on it, and the refund's idempotency key derives from
it, so a redelivered webhook and the buyer's return refund one time between them. Each use case
runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Session, select

from postsale.checkout.adapters.payments.port import PaymentResult, RefundResult
from postsale.checkout.adapters.tables import CheckoutSession, ReturnedPayment
from postsale.checkout.attempt_lock import hold_attempt

NOTHING_CHARGED = "Nothing was charged: only the card was saved."


def refund_key(provider: str, provider_payment_id: str) -> str:
    return f"return:{provider}:{provider_payment_id}"


def returned_payment(session: Session, provider: str, provider_payment_id: str) -> ReturnedPayment | None:
    return session.exec(select(ReturnedPayment).where(
        ReturnedPayment.provider == provider, ReturnedPayment.provider_payment_id == provider_payment_id)).first()


def returns_of(session: Session, checkout_id: str) -> list[ReturnedPayment]:
    return list(session.exec(select(ReturnedPayment).where(ReturnedPayment.checkout_session_id == checkout_id)
                             .order_by(ReturnedPayment.returned_at)).all())


def record_return(session: Session, checkout: CheckoutSession, result: PaymentResult, *, provider: str, reason: str,
                  now: datetime) -> ReturnedPayment | None:
    """The payment is to go back: its row, once (an existing one is returned as it is). A race of
    two callers ends at the unique constraint, on commit.

    The attempt is held, as its completion holds it: a payment found to match (the buyer changed
    the order back) and found not to at the same moment is either completed or returned, never
    both. None when it completed the attempt first: it is kept, and a returned one never
    completes anything (`handlers.complete_first_payment`)."""
    hold_attempt(session, checkout)
    existing = returned_payment(session, provider, result.payment_id or "")
    if existing is not None:
        return existing
    if checkout.status == "paid" and checkout.provider_payment_id == result.payment_id:
        return None
    returned = ReturnedPayment(
        id=f"ret_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, email=checkout.email, provider=provider,
        provider_payment_id=result.payment_id or "", amount=result.amount or 0,
        currency=(result.currency or "").upper(), reason=reason, returned_at=now)
    session.add(returned)
    return returned


def record_refund(session: Session, returned: ReturnedPayment, refund: RefundResult, now: datetime) -> None:
    """What the provider answered to the refund. A refusal stays on the row for the seller to act on
    (Stripe keeps the idempotency key's answer, so asking again would not change it)."""
    returned.provider_refund_id = refund.refund_id or returned.provider_refund_id
    returned.status = "refunded" if refund.succeeded else "failed"
    returned.message = refund.message
    returned.refunded_at = now if refund.succeeded else None
    session.add(returned)
