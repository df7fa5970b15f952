"""Customers' access as entitlements' ledger events describe it, and the reminder before access
that was granted for a limited time ends.

Kept per customer, product and source (a purchase, or the seller's manual grants), so that a
follow-up sequence can stop when access to its offer's products ends, and a reminder is not sent
when the access was revoked or extended since it was planned. Each use case runs inside the
caller's transaction and never commits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from postsale.contracts import AccessGranted, AccessRestored, AccessRevoked, AccessSuspended
from postsale.notifications.adapters.tables import AccessRecord, FollowUp
from postsale.notifications.domain import access as rules
from postsale.notifications.emails import queue_email
from postsale.runtime.clock import as_utc
from postsale.runtime.scheduler import wake
from postsale.runtime.settings import PublicUrls, from_environment

log = logging.getLogger(__name__)
FOLLOW_UPS = "follow-up-scheduler"
"""The scheduler that runs `follow_ups` rows."""
AccessEvent = AccessGranted | AccessRevoked | AccessSuspended | AccessRestored


def follow_access(session: Session, event: AccessEvent, _event_id: str) -> None:
    """Started by `AccessGranted`, `AccessRevoked`, `AccessSuspended` and `AccessRestored`: keeps the
    access; a grant that expires plans its reminder. An older fact than the one kept changes nothing."""
    match event:
        case AccessGranted():
            at, status, expires_at = event.granted_at, "active", event.expires_at
        case AccessRevoked():
            at, status, expires_at = event.revoked_at, "revoked", None
        case AccessSuspended():
            at, status, expires_at = event.suspended_at, "suspended", None
        case AccessRestored():
            at, status, expires_at = event.restored_at, "active", None
        case _:
            raise TypeError(f"not an access change: {event.event_type}")
    key = (event.customer_id, event.product_id, event.purchase_id or "manual")
    record = session.get(AccessRecord, key, with_for_update=True)
    if record is not None and as_utc(record.changed_at) > at:
        return
    if record is None:
        record = AccessRecord(customer_id=key[0], product_id=key[1], source=key[2], email=event.email,
                              product_name=event.product_name, status=status, changed_at=at)
    if isinstance(event, AccessGranted):
        record.expires_at = expires_at
    record.status, record.changed_at, record.email, record.product_name = status, at, event.email, event.product_name
    session.add(record)
    if isinstance(event, AccessGranted):
        _plan_ending_reminder(session, record, granted_at=at)


def end_purchase_access(session: Session, purchase_id: str, customer_id: str, product_ids: list[str],
                        at: datetime) -> None:
    """Part of a full refund: the purchase's access ends with it (every access policy revokes on a
    full refund), known here at once rather than when entitlements' revocation arrives, so that no
    follow-up goes out in between. Another purchase's access to the same products stays."""
    for product_id in product_ids:
        record = session.get(AccessRecord, (customer_id, product_id, purchase_id), with_for_update=True)
        if record is None:
            record = AccessRecord(customer_id=customer_id, product_id=product_id, source=purchase_id, email="",
                                  product_name="", status="revoked", changed_at=at)
        elif as_utc(record.changed_at) > at:
            continue
        record.status, record.changed_at = "revoked", at
        session.add(record)


def _plan_ending_reminder(session: Session, record: AccessRecord, *, granted_at: datetime) -> None:
    ends_at = as_utc(record.expires_at)
    due_at = rules.ending_due(granted_at, ends_at)
    if due_at is None or ends_at is None:
        return
    key = f"access-ending:{record.customer_id}:{record.product_id}:{record.source}:{ends_at.isoformat()}"
    if session.get(FollowUp, key) is None:
        session.add(FollowUp(id=key, due_at=due_at, kind="access_ending", customer_id=record.customer_id,
                             to=record.email, product_id=record.product_id, purchase_id=record.source,
                             moment=ends_at, planned_at=granted_at))
        wake(session, FOLLOW_UPS)


def records_of(session: Session, customer_id: str, product_ids: list[str]) -> list[AccessRecord]:
    if not product_ids:
        return []
    return list(session.exec(select(AccessRecord).where(
        AccessRecord.customer_id == customer_id, AccessRecord.product_id.in_(product_ids))).all())  # type: ignore[attr-defined]


def as_access(record: AccessRecord) -> rules.Access:
    return rules.Access(record.status, as_utc(record.expires_at), as_utc(record.changed_at))


def has_access(session: Session, customer_id: str, product_ids: list[str], now: datetime) -> bool | None:
    """Whether the customer may use any of the products at `now`; None when nothing is known yet."""
    return rules.has_access([as_access(r) for r in records_of(session, customer_id, product_ids)], now)


def send_ending_reminder(session: Session, row: FollowUp, now: datetime) -> None:
    """Run at the reminder's due time: queues "Your access ends on ..." unless the access was
    revoked or extended since."""
    records = records_of(session, row.customer_id, [row.product_id or ""])
    this = next((r for r in records if r.source == row.purchase_id), None)
    ends_at = as_utc(row.moment)
    why_not = rules.why_not_remind(ends_at, this=as_access(this) if this else None,
                                   others=[as_access(r) for r in records if r is not this], now=now)
    if why_not or this is None:
        log.info("access-ending reminder %s not sent: %s", row.id, why_not)
        return
    queue_email(session, key=row.id, template="access_ending", to=row.to, customer_id=row.customer_id,
                product_name=this.product_name, ends_at=ends_at, library_url=from_environment(PublicUrls).library_url)
