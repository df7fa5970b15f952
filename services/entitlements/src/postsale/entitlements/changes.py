"""How a change of access is applied, shared by every use case that changes access (`handlers`,
`grants`, `products`). Each runs inside the caller's transaction and never commits.

Lock the customer (so one customer's changes happen one after another), apply the access policy
(`domain/access.py`) to the grants a change concerns, and for each grant whose state changed write
a ledger entry, update the current-access row and queue the matching event (`AccessGranted`,
`AccessRevoked`, `AccessSuspended`, `AccessRestored`) through the outbox. A moment when access
will end by itself becomes a due row that the scheduler runs (`handlers.review_access`). Each grant
whose access began or ended is then handed to its delivery type's strategy (`delivery/runner.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session, select

from postsale.contracts import AccessGranted, AccessRestored, AccessRevoked, AccessSuspended, delivery_fields
from postsale.contracts.base import Event
from postsale.entitlements.adapters.tables import (AccessEntry, AccessFact, AccessReview, Customer, Grant, Product,
                                                   Purchase)
from postsale.entitlements.config import SERVICE
from postsale.entitlements.delivery.runner import deliver_changes, note_change
from postsale.entitlements.domain.access import AccessState, Action, Fact, Policy, Status, access_state, change
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import insert_for, insert_once
from postsale.runtime.messaging import publish_later
from postsale.runtime.scheduler import wake

SOURCE = f"/postsale/{SERVICE}"
REVIEWS = f"{SERVICE}-access-reviews"
"""The scheduler that runs `access_reviews` rows."""

_STATUS_AFTER: dict[Action, Status] = {"grant": "active", "restore": "active", "revoke": "revoked",
                                       "suspend": "suspended", "expire": "expired"}


@dataclass(frozen=True)
class Cause:
    """Who made a change and, when an event did, which one (its CloudEvents id and type)."""

    actor: str
    event_id: str | None = None
    event_type: str | None = None
    actor_id: str | None = None
    note: str | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def lock_customer(session: Session, customer_id: str, email: str | None = None) -> Customer:
    """The customer's row, locked until the transaction ends (created when new). Taken first by
    every change: on PostgreSQL it orders one customer's changes, on SQLite it starts the write."""
    # One statement locks the row and reads it (and, given an email, creates it first when new):
    # this runs for every change of access, and three round trips cost more than the change.
    if email is None:
        statement = update(Customer).where(Customer.id == customer_id).values(ledger_seq=Customer.ledger_seq)
    else:
        statement = insert_for(session, Customer).values(id=customer_id, email=email, ledger_seq=0,
                                                         updated_at=utcnow())
        statement = statement.on_conflict_do_update(index_elements=[Customer.id],
                                                    set_={"ledger_seq": Customer.ledger_seq})
    customer = session.scalars(statement.returning(Customer),  # type: ignore[union-attr]
                               execution_options={"populate_existing": True}).one_or_none()
    if customer is None:
        raise LookupError(f"unknown customer {customer_id}")
    if email and customer.email != email:
        customer.email = email  # the newest purchase's
        customer.updated_at = utcnow()
    return customer


def policy_of(purchase: Purchase | None) -> Policy:
    if purchase is None:  # a seller's grant
        return Policy()
    return Policy(access_days=purchase.access_days, on_cancel=purchase.on_cancel,  # type: ignore[arg-type]
                  on_pause=purchase.on_pause, on_partial_refund=purchase.on_partial_refund)  # type: ignore[arg-type]


def domain_fact(row: AccessFact) -> Fact:
    return Fact(id=row.id, kind=row.kind, at=as_utc(row.occurred_at), key=row.key,  # type: ignore[arg-type]
                effective_at=as_utc(row.effective_at), detail=row.detail, received_at=as_utc(row.recorded_at))


def apply_policy(session: Session, customer: Customer, grants: list[Grant], now: datetime, *,
                 cause: Cause | None = None, trigger: Fact | None = None, reason: str | None = None) -> None:
    """Applies the policy to each grant at `now`: records and publishes each change, keeps when
    access ends by itself and schedules a review then. `cause` is what made the change (None:
    the scheduler, when the cause is the fact that decided it, or the grant's own end); `reason`
    replaces the policy's in the ledger (reconciliation's repairs say `reconciliation`)."""
    if not grants:
        return
    purchase_ids = sorted({g.purchase_id for g in grants if g.purchase_id})
    grant_ids = [g.id for g in grants]
    rows = session.exec(select(AccessFact).where(or_(
        AccessFact.purchase_id.in_(purchase_ids), AccessFact.grant_id.in_(grant_ids)))).all()  # type: ignore[union-attr]
    # By key: a purchase just recorded (as when it is granted) is in the session, and read no more.
    purchases = {purchase_id: session.get(Purchase, purchase_id) for purchase_id in purchase_ids}
    by_id = {row.id: row for row in rows}
    for grant in grants:
        facts = [domain_fact(r) for r in rows
                 if r.grant_id == grant.id or (grant.purchase_id and r.purchase_id == grant.purchase_id)]
        state = access_state(facts, policy_of(purchases.get(grant.purchase_id or "")), now,
                             expires_at=as_utc(grant.expires_at))
        grant.ends_at, grant.ends_because = state.ends_at, state.ends_because
        session.add(grant)
        step = change(grant.status, state, trigger)  # type: ignore[arg-type]
        if step is not None:
            record_change(session, customer, grant, step.action, reason or step.reason,
                          cause or _cause_of(state, grant, by_id), now)
        if state.ends_at is not None and state.status in ("active", "suspended"):
            _schedule_review(session, grant, state.ends_at)
    deliver_changes(session, now)


def _cause_of(state: AccessState, grant: Grant, facts: dict[str, AccessFact]) -> Cause:
    """What caused a change the scheduler makes: the fact that decided it, else the grant itself
    (its access period ended)."""
    if state.decided_by is not None:
        row = facts[state.decided_by.id]
        return Cause(row.actor, row.cause_event_id, row.cause_event_type, row.actor_id, row.note)
    return Cause("system", grant.cause_event_id, grant.cause_event_type)


def _schedule_review(session: Session, grant: Grant, at: datetime) -> None:
    row_id = f"review_{grant.id}_{int(at.timestamp() * 1_000_000)}"
    if session.get(AccessReview, row_id) is None:
        session.add(AccessReview(id=row_id, due_at=at, grant_id=grant.id))
        wake(session, REVIEWS)


def record_change(session: Session, customer: Customer, grant: Grant, action: Action, reason: str,
                  cause: Cause, now: datetime) -> AccessEntry:
    """One ledger entry, numbered after the customer's previous one, the grant's new state, and
    the event that tells subscribers, all in the caller's transaction."""
    status_before = None if action == "grant" else grant.status
    customer.ledger_seq += 1
    entry = AccessEntry(id=new_id("entry"), seq=customer.ledger_seq, customer_id=customer.id, email=customer.email,
                        product_id=grant.product_id, grant_id=grant.id, action=action, reason=reason,
                        actor=cause.actor, actor_id=cause.actor_id, note=cause.note, cause_event_id=cause.event_id,
                        cause_event_type=cause.event_type, purchase_id=grant.purchase_id, created_at=now,
                        expires_at=grant.expires_at)
    grant.status, grant.reason, grant.changed_at, grant.last_seq = _STATUS_AFTER[action], reason, now, entry.seq
    session.add_all([customer, grant])
    insert_once(session, entry)  # never changed after: one plain statement, not the unit of work
    publish_later(session, _access_event(session, entry, grant), source=SOURCE)
    note_change(session, grant, status_before, entry)
    return entry


def _access_event(session: Session, entry: AccessEntry, grant: Grant) -> Event:
    product = session.get(Product, grant.product_id)
    common = dict(entry_id=entry.id, customer_id=entry.customer_id, email=entry.email, product_id=entry.product_id,
                  product_name=product.name if product else grant.product_name,
                  **delivery_fields(product.delivery_type if product else grant.delivery_type), reason=entry.reason,
                  actor=entry.actor, actor_id=entry.actor_id, cause_event_id=entry.cause_event_id,
                  cause_event_type=entry.cause_event_type, purchase_id=entry.purchase_id)
    at = entry.created_at
    if entry.action == "grant":
        return AccessGranted(**common, granted_at=at, expires_at=grant.expires_at)
    if entry.action == "suspend":
        return AccessSuspended(**common, suspended_at=at)
    if entry.action == "restore":
        return AccessRestored(**common, restored_at=at)
    return AccessRevoked(**common, revoked_at=at)  # revoke, or the end of an access period

