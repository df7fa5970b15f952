"""Giving back a payment its attempt cannot take, and the page that tells the buyer.

The webhook and the buyer's return both find such a payment (`handlers.PaymentMismatch`); either
one gives it back, and the other finds it given back already.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.checkout import returns
from postsale.checkout.adapters.payments.port import PaymentProvider, PaymentResult, RefundResult
from postsale.checkout.adapters.tables import CheckoutSession, ReturnedPayment
from postsale.checkout.entrypoints.buyer import checkout_or_404, page
from postsale.runtime.clock import utcnow
from postsale.runtime.db import SessionDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["pages"])


def give_back(engine, provider: PaymentProvider, checkout_id: str, result: PaymentResult, *,
              reason: str) -> ReturnedPayment | None:
    """Records the payment as returned, then refunds it in full, between transactions.

    Safe to repeat: one row per payment, one refund per payment (the key derives from it); a
    payment already refunded is not asked for again. Raises PaymentError when the provider cannot
    be reached: the row stays `refunding`, and the next delivery of the webhook tries again.
    None when the payment completed the attempt meanwhile: it is kept.
    """
    with Session(engine) as session:
        checkout = session.get(CheckoutSession, checkout_id)
        returned = returns.record_return(session, checkout, result, provider=provider.name, reason=reason, now=utcnow())
        if returned is None:
            session.rollback()
            return None
        try:
            session.commit()
        except IntegrityError:  # the webhook and the buyer's return at once: the other one's row
            session.rollback()
            returned = returns.returned_payment(session, provider.name, result.payment_id or "")
        if returned.status != "refunding":
            return returned
        if returned.amount == 0:  # a SetupIntent: a card saved, nothing charged, nothing to refund
            returns.record_refund(session, returned, RefundResult("", 0, True, returns.NOTHING_CHARGED), utcnow())
            session.commit()
            return returned
        returned_id, amount = returned.id, returned.amount
    log.warning("%s payment %s of %s returned: %s", provider.name, result.payment_id, checkout_id, reason)
    refund = provider.refund(payment_id=result.payment_id or "", amount=amount,
                             idempotency_key=returns.refund_key(provider.name, result.payment_id or ""))
    with Session(engine) as session:
        returned = session.get(ReturnedPayment, returned_id, with_for_update=True)
        if returned.status == "refunding":
            returns.record_refund(session, returned, refund, utcnow())
            session.commit()
        if returned.status == "failed":
            log.error("%s refused to return payment %s: %s", provider.name, result.payment_id, returned.message)
        session.refresh(returned)
        return returned


@router.get("/checkout/{checkout_id}/returned", response_class=HTMLResponse)
def returned_page(checkout_id: str, request: Request, session: SessionDep):
    """What the buyer sees when their payment was given back: why, that the money is on its way
    back (or that the seller will refund it), and the way to pay the order as it is now."""
    checkout = checkout_or_404(session, checkout_id)
    returned = returns.returns_of(session, checkout.id)
    if not returned:
        raise HTTPException(status_code=404, detail="No payment of this checkout was returned.")
    return page(request, "returned.html", {"checkout": checkout, "returned": returned})
