"""Each customer's last activity, for the seller: the last login (accounts' own), and the last
library visit, lesson and download (entitlements' `ContentOpened`). Accounts alone publishes
`CustomerActivity` on its topic, at most one per customer, kind and product every few minutes,
however many replicas run (`postsale.runtime.activity`). Each use case runs inside the caller's
transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from postsale.accounts.adapters.tables import ActivityPublicationRow, ActivityRecord, Customer
from postsale.accounts.config import SERVICE
from postsale.contracts import ContentOpened, CustomerActivity
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"
ACTIVITY_KINDS = ("login", "library_visit", "lesson", "download")


def _publish(session: Session, throttle: ActivityThrottle, *, customer_id: str, kind: str, product_id: str | None,
             at: datetime) -> bool:
    if not throttle.claim(session, ActivityPublicationRow, customer_id=customer_id, kind=kind, product_id=product_id,
                          now=at):
        return False
    publish_later(session, CustomerActivity(customer_id=customer_id, kind=kind, product_id=product_id, occurred_at=at),
                  source=SOURCE)
    return True


def record_login(session: Session, throttle: ActivityThrottle, customer: Customer, at: datetime) -> bool:
    """The customer logged in (`Customer.last_login_at` keeps when): `CustomerActivity` unless one went
    out lately. True when queued."""
    return _publish(session, throttle, customer_id=customer.id, kind="login", product_id=None, at=at)


def record_content_opened(session: Session, event: ContentOpened, _event_id: str) -> None:
    """Started by entitlements' `ContentOpened`: the customer's last activity of that kind (an event
    older than the one kept does not replace it), and `CustomerActivity`. Entitlements already sends
    at most one per customer, kind and product every few minutes, and the inbox drops a redelivery,
    so nothing is throttled again here."""
    row = session.get(ActivityRecord, (event.customer_id, event.kind))
    if row is None or as_utc(row.last_at) < event.opened_at:
        row = row or ActivityRecord(customer_id=event.customer_id, kind=event.kind, last_at=event.opened_at)
        row.last_at, row.product_id = event.opened_at, event.product_id
        session.add(row)
    publish_later(session, CustomerActivity(customer_id=event.customer_id, kind=event.kind,
                                            product_id=event.product_id, occurred_at=event.opened_at), source=SOURCE)


def last_activity(session: Session, customer: Customer) -> dict[str, datetime | None]:
    """When the customer last did each kind of thing; None for what they never did."""
    kept = {row.kind: as_utc(row.last_at) for row in session.exec(
        select(ActivityRecord).where(ActivityRecord.customer_id == customer.id)).all()}
    last = {kind: kept.get(kind) for kind in ACTIVITY_KINDS}
    # Logins are accounts' own; rows of kind `login` come from before accounts kept them on the customer.
    logins = [t for t in (last["login"], as_utc(customer.last_login_at)) if t]
    last["login"] = max(logins, default=None)
    return last
