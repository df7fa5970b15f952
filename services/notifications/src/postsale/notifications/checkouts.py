"""The abandoned-checkout reminder: a buyer who gave an email and did not pay gets one email with
the way back to the checkout. A marketing email: not to an unsubscribed address, never after
paying. Runs inside the caller's transaction and never commits."""

from __future__ import annotations

from sqlmodel import Session, select

from postsale.contracts import CheckoutAbandoned
from postsale.notifications.adapters.tables import PurchaseRecord
from postsale.notifications.emails import queue_email


def queue_recovery_email(session: Session, event: CheckoutAbandoned, _event_id: str) -> None:
    """Started by `CheckoutAbandoned`: one email per checkout, unless the seller turned it off for
    the offer, or the buyer has bought the offer since starting it (checkout says so too; a
    purchase that overtook this event on its own topic is checked here)."""
    if not event.send_recovery_email:
        return
    paid = session.exec(select(PurchaseRecord.id).where(
        PurchaseRecord.email == event.email, PurchaseRecord.offer_id == event.offer_id,
        PurchaseRecord.completed_at >= event.started_at)).first()
    if paid is not None:
        return
    queue_email(session, key=f"abandoned-checkout:{event.checkout_id}", template="abandoned_checkout", to=event.email,
                customer_id=event.customer_id, marketing=True, checkout=event, resume_url=event.resume_url)
