"""What other services did about a purchase, kept from their events for its timeline.

Entitlements tells of access granted, revoked, suspended and restored (`entitlements.access.v1`,
with the purchase when one is the source); notifications tells of each email handed to the relay
or given up on (`notifications.emails.v1`), whose key names the purchase, its subscription or its
refund. Checkout keeps one line per event, so the purchase page in the back office shows the whole
story from checkout's own database, whichever service is down.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from postsale.checkout.adapters.tables import PurchaseHappening, Refund, Subscription
from postsale.contracts import (AccessGranted, AccessRestored, AccessRevoked, AccessSuspended, EmailFailed,
                                EmailSent)
from postsale.runtime.db import built_once

ACCESS_WORDS = {AccessGranted: "granted", AccessRevoked: "revoked", AccessSuspended: "suspended",
                AccessRestored: "restored"}


def _keep(session: Session, *, event_id: str, purchase_id: str, at: datetime, service: str, kind: str,
          summary: str) -> None:
    statement = built_once(session, PurchaseHappening,
                           lambda insert: insert(PurchaseHappening.__table__).on_conflict_do_nothing())
    session.execute(statement, {"event_id": event_id, "purchase_id": purchase_id, "at": at, "service": service,
                                "kind": kind, "summary": summary[:500]})


def access_changed(session: Session, event: AccessGranted | AccessRevoked | AccessSuspended | AccessRestored,
                   event_id: str) -> None:
    """Started by an access event of a purchase: its line in the purchase's timeline."""
    if not event.purchase_id:
        return  # granted by hand or by a subscription's own events: not one purchase's story
    word = ACCESS_WORDS[type(event)]
    at = getattr(event, f"{word}_at")
    until = f" until {event.expires_at:%d %b %Y}" if isinstance(event, AccessGranted) and event.expires_at else ""
    # A person is named (the seller's staff member, the provider); the system's own steps are not.
    by = {"seller": " by the seller", "provider": " by the payment provider"}.get(event.actor, "")
    by += f" ({event.actor_id})" if by and event.actor_id else ""
    _keep(session, event_id=event_id, purchase_id=event.purchase_id, at=at, service="entitlements",
          kind=f"access_{word}",
          summary=f"Access to {event.product_name} {word}{until}{by}: {event.reason}")


def _purchase_of_email(session: Session, email_key: str) -> str | None:
    """The purchase an email is about, from the ids its key names (see notifications' keys, such as
    `purchase-confirmation:<purchase>`, `renewal-receipt:<subscription>:<payment>`,
    `refund-confirmation:<refund>`)."""
    for part in email_key.split(":"):
        if part.startswith("pur_"):
            return part
        if part.startswith("sub_"):
            return session.exec(select(Subscription.purchase_id).where(Subscription.id == part)).first()
        if part.startswith("re_"):
            return session.exec(select(Refund.purchase_id).where(Refund.id == part)).first()
    return None


def email_told(session: Session, event: EmailSent | EmailFailed, event_id: str) -> None:
    """Started by an email's fate: its line in the timeline of the purchase it is about, if any."""
    purchase_id = _purchase_of_email(session, event.email_key)
    if purchase_id is None:
        return
    name = event.template.replace("_", " ")
    if isinstance(event, EmailSent):
        _keep(session, event_id=event_id, purchase_id=purchase_id, at=event.sent_at, service="notifications",
              kind="email_sent", summary=f"Email “{name}” to {event.to} accepted by the mail relay")
    else:
        _keep(session, event_id=event_id, purchase_id=purchase_id, at=event.failed_at, service="notifications",
              kind="email_failed",
              summary=f"Email “{name}” to {event.to} given up after {event.attempts} attempts: {event.error}")


def of_purchase(session: Session, purchase_id: str, *, limit: int = 200) -> list[PurchaseHappening]:
    """The purchase's happenings elsewhere, newest first."""
    return list(session.exec(select(PurchaseHappening).where(PurchaseHappening.purchase_id == purchase_id)
                             .order_by(PurchaseHappening.at.desc(), PurchaseHappening.event_id).limit(limit)))
