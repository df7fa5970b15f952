"""Entitlements use cases. Each runs inside the caller's transaction and never commits.

Every change of access goes the same way: lock the customer (so one customer's changes happen
one after another), record what happened as a fact, apply the access policy (`domain/access.py`)
to the grants it concerns, and for each grant whose state changed write a ledger entry, update
the current-access row and queue the matching event (`AccessGranted`, `AccessRevoked`,
`AccessSuspended`, `AccessRestored`) through the outbox. A moment when access will end by itself
becomes a due row that the scheduler runs (`review_access`). Each grant whose access began or
ended is then handed to its delivery type's strategy (`delivery/runner.py`), in the same
transaction, so what delivery did or failed to do is recorded with the change (`changes.py`).

Here: the use cases the consumers, the scheduler and reconciliation call. The seller's manual
grants and revocations are in `grants.py`, products in `products.py`, and what the pages and the
admin API read in `access_views.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from postsale.contracts import (DisputeLost, DisputeOpened, DisputeWon, PurchaseCompleted, PurchaseRefunded,
                                SubscriptionCancellationScheduled, SubscriptionCancellationUndone,
                                SubscriptionCancelled, SubscriptionPastDue, SubscriptionPaused, SubscriptionResumed,
                                delivery_kind_of)
from postsale.contracts.base import Event
from postsale.entitlements.adapters.tables import (AccessEntry, AccessFact, AccessReview, Grant, Product, Purchase,
                                                   PurchaseProduct)
from postsale.entitlements.changes import (Cause, apply_policy, domain_fact, lock_customer, new_id, policy_of,
                                           record_change)
from postsale.entitlements.domain.access import PURCHASE, RECONCILIATION
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import insert_once


# --- what changes access -------------------------------------------------------------------


def grant_access_for_purchase(session: Session, event: PurchaseCompleted, event_id: str, *,
                              now: datetime | None = None) -> list[Grant]:
    """Started by `PurchaseCompleted`: a grant per product, each published as `AccessGranted`, for
    good or until the end of the offer's access period. Billing events about the purchase that
    arrived first (they travel on another topic) are applied at once. The same purchase arriving
    again (under another event id) changes nothing."""
    now = now or utcnow()
    customer = lock_customer(session, event.customer_id, event.email)
    policy = event.access_policy
    purchase = Purchase(
        id=event.purchase_id, customer_id=event.customer_id, email=event.email, offer_id=event.offer_id,
        offer_name=event.offer_name, order_id=event.order_id, parent_purchase_id=event.parent_purchase_id,
        subscription_id=event.subscription_id, access_days=policy.access_days, on_cancel=policy.on_cancel,
        on_pause=policy.on_pause, on_partial_refund=policy.on_partial_refund, completed_at=event.completed_at,
        event_id=event_id,
    )
    # Recorded once, by the purchase's key: the same purchase again (under another event id, or a
    # replica's at the same moment, which waits for this transaction) records and grants nothing.
    if not insert_once(session, purchase, keep=True):  # kept: the policy below finds it without a read
        return []
    for item in {item.product_id: item for item in event.products}.values():
        insert_once(session, PurchaseProduct(purchase_id=event.purchase_id, product_id=item.product_id,
                                             name=item.name, delivery_type=delivery_kind_of(item)))
    cause = Cause("customer", event_id, event.event_type)
    granted_at = as_utc(event.completed_at)
    expires_at = policy_of(purchase).expires_at(granted_at)
    # Beyond the purchase's key above, the grants' unique constraint and the ledger's partial unique
    # index each refuse a second grant of a product of this purchase.
    grants: list[Grant] = []
    for item in event.products:
        if any(g.product_id == item.product_id for g in grants):
            continue
        grant = Grant(id=new_id("grant"), customer_id=event.customer_id, product_id=item.product_id,
                      product_name=item.name, delivery_type=delivery_kind_of(item), source="purchase",
                      purchase_id=event.purchase_id, status="active", reason=PURCHASE, granted_at=granted_at,
                      expires_at=expires_at, changed_at=now, last_seq=0, cause_event_id=event_id,
                      cause_event_type=event.event_type)
        record_change(session, customer, grant, "grant", PURCHASE, cause, now)
        grants.append(grant)
    # A change now is caused by the fact that arrived first (a refund, a billing event), not by the purchase.
    apply_policy(session, customer, grants, now)
    return grants


def apply_refund(session: Session, event: PurchaseRefunded, event_id: str, *, now: datetime | None = None) -> None:
    """Started by `PurchaseRefunded`: a full refund revokes the purchase's grants at once; a partial
    one keeps them, unless the offer's policy revokes on a partial refund."""
    _on_fact(session, event, event_id, purchase_id=event.purchase_id, actor=event.actor, now=now,
             kind="full_refund" if event.full else "partial_refund", at=event.refunded_at, key=event.refund_id,
             detail=event.reason)


def apply_dispute(session: Session, event: DisputeOpened | DisputeWon | DisputeLost, event_id: str, *,
                  now: datetime | None = None) -> None:
    """Started by `DisputeOpened`, `DisputeWon` and `DisputeLost`: the purchase's grants are
    suspended, restored or revoked. A dispute closed before its opening arrives stays closed."""
    if isinstance(event, DisputeOpened):
        kind, at = "dispute_opened", event.opened_at
    else:
        kind, at = ("dispute_won" if isinstance(event, DisputeWon) else "dispute_lost"), event.closed_at
    _on_fact(session, event, event_id, purchase_id=event.purchase_id, actor="provider", now=now,
             kind=kind, at=at, key=event.dispute_id, detail=getattr(event, "reason", None))


BillingEvent = (SubscriptionCancellationScheduled | SubscriptionCancellationUndone | SubscriptionCancelled
                | SubscriptionPaused | SubscriptionResumed | SubscriptionPastDue)


def apply_billing_change(session: Session, event: BillingEvent, event_id: str, *, now: datetime | None = None) -> None:
    """Started by a subscription's or payment plan's events. Its grants are those of the purchase
    that started it. A scheduled cancellation changes nothing (unless the policy revokes at once;
    its undoing restores then); a cancelled billing revokes at its effective time, scheduled when
    that is still ahead; a pause keeps access or suspends it, per the policy, and a resume restores
    it; a past-due billing keeps it while retries run."""
    purchase_id = event.purchase_id
    by_subscription = session.exec(select(Purchase.id).where(Purchase.subscription_id == event.subscription_id)).first()
    if by_subscription is not None:
        purchase_id = by_subscription
    effective_at = detail = None
    actor = getattr(event, "actor", "system")
    if isinstance(event, SubscriptionCancellationScheduled):
        kind, at, effective_at, detail = "cancellation_scheduled", event.scheduled_at, event.effective_at, event.reason
    elif isinstance(event, SubscriptionCancellationUndone):
        kind, at = "cancellation_undone", event.undone_at
    elif isinstance(event, SubscriptionCancelled):
        kind, at, effective_at, detail = "subscription_cancelled", event.cancelled_at, event.effective_at, event.reason
    elif isinstance(event, SubscriptionPaused):
        kind, at = "paused", event.paused_at
    elif isinstance(event, SubscriptionResumed):
        kind, at = "resumed", event.resumed_at
    else:
        kind, at = "past_due", event.since
    _on_fact(session, event, event_id, purchase_id=purchase_id, actor=actor, now=now, kind=kind, at=at,
             effective_at=effective_at, detail=detail)


def review_access(session: Session, row: AccessReview, now: datetime) -> None:
    """Run by the scheduler when a grant's access may end by itself: at the end of its access
    period (an `expire` entry, reason "access period ended") or when its billing ends (a `revoke`
    caused by the `SubscriptionCancelled`). Published as `AccessRevoked`. Safe to run again."""
    grant = session.get(Grant, row.grant_id)
    if grant is None or grant.status in ("revoked", "expired"):
        return
    customer = lock_customer(session, grant.customer_id)
    session.refresh(grant)
    apply_policy(session, customer, [grant], now)


# --- reconciliation's repairs --------------------------------------------------------------
# Each runs inside the caller's transaction, through the same policy and ledger as every other
# change: the entries say actor `system`, reason `reconciliation`, and the mismatch as their note.


def reconcile_grant(session: Session, *, grant_id: str, note: str, now: datetime | None = None) -> Grant | None:
    """A purchase's grant whose state disagrees with its purchase's events: the policy is applied
    to it again. Changes nothing when it agrees by now."""
    now = now or utcnow()
    grant = session.get(Grant, grant_id)
    if grant is None:
        return None
    customer = lock_customer(session, grant.customer_id)
    session.refresh(grant)
    apply_policy(session, customer, [grant], now, cause=Cause("system", note=note), reason=RECONCILIATION)
    return grant


def reconcile_missing_grant(session: Session, *, purchase_id: str, product_id: str, note: str,
                            now: datetime | None = None) -> Grant | None:
    """A product of a purchase with no grant: granted (or, when the ledger already granted it once,
    its grant is made again and restored), then the policy is applied."""
    now = now or utcnow()
    purchase = session.get(Purchase, purchase_id)
    item = session.get(PurchaseProduct, (purchase_id, product_id))
    if purchase is None or item is None:
        return None
    customer = lock_customer(session, purchase.customer_id)
    existing = session.exec(select(Grant).where(Grant.purchase_id == purchase_id, Grant.product_id == product_id)).first()
    if existing is not None:
        return existing
    cause = Cause("system", purchase.event_id, PurchaseCompleted.event_type, note=note)
    earlier = session.exec(select(AccessEntry).where(AccessEntry.purchase_id == purchase_id,
                                                     AccessEntry.product_id == product_id,
                                                     AccessEntry.action == "grant")).first()
    product = session.get(Product, product_id)
    granted_at = as_utc(purchase.completed_at)
    grant = Grant(id=(earlier.grant_id if earlier and earlier.grant_id else None) or new_id("grant"),
                  customer_id=purchase.customer_id, product_id=product_id,
                  product_name=product.name if product else item.name,
                  delivery_type=product.delivery_type if product else delivery_kind_of(item), source="purchase",
                  purchase_id=purchase_id, status="revoked" if earlier else "active",
                  reason="missing" if earlier else RECONCILIATION, granted_at=granted_at,
                  expires_at=policy_of(purchase).expires_at(granted_at), changed_at=now,
                  last_seq=earlier.seq if earlier else 0, cause_event_id=purchase.event_id,
                  cause_event_type=PurchaseCompleted.event_type)
    if earlier is None:
        record_change(session, customer, grant, "grant", RECONCILIATION, cause, now)
    else:  # the ledger allows one grant per product of a purchase: the grant comes back as a restore
        session.add(grant)
        session.flush()
    apply_policy(session, customer, [grant], now, cause=cause, reason=RECONCILIATION)
    return grant


def reconcile_orphan_grant(session: Session, *, grant_id: str, note: str, now: datetime | None = None) -> Grant | None:
    """An active grant whose purchase (or whose product in it) was never received: revoked."""
    now = now or utcnow()
    grant = session.get(Grant, grant_id)
    if grant is None:
        return None
    customer = lock_customer(session, grant.customer_id)
    session.refresh(grant)
    fact = AccessFact(id=new_id("fact"), grant_id=grant_id, kind="reconciliation_revoke", occurred_at=now,
                      actor="system", note=note, recorded_at=now)
    session.add(fact)
    apply_policy(session, customer, [grant], now, cause=Cause("system", note=note), trigger=domain_fact(fact))
    return grant


def _on_fact(session: Session, event: Event, event_id: str, *, purchase_id: str, actor: str, kind: str,
             at: datetime, now: datetime | None, key: str = "", effective_at: datetime | None = None,
             detail: str | None = None) -> None:
    """Records what `event` says happened to a purchase, and applies the policy to its grants.
    A purchase not seen yet keeps the fact for when it arrives."""
    now = now or utcnow()
    customer = lock_customer(session, event.customer_id, event.email)  # type: ignore[attr-defined]
    fact = AccessFact(id=new_id("fact"), purchase_id=purchase_id, kind=kind, key=key, occurred_at=at,
                      effective_at=effective_at, detail=detail, actor=actor, cause_event_id=event_id,
                      cause_event_type=event.event_type, recorded_at=now)
    session.add(fact)
    grants = list(session.exec(select(Grant).where(Grant.purchase_id == purchase_id)).all())
    apply_policy(session, customer, grants, now, cause=Cause(actor, event_id, event.event_type),
                 trigger=domain_fact(fact))
