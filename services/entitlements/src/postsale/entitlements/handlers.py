"""Entitlements use cases. Each runs inside the caller's transaction and never commits.

Every change of access goes the same way: lock the customer (so one customer's changes happen
one after another), record what happened as a fact, apply the access policy (`domain/access.py`)
to the grants it concerns, and for each grant whose state changed write a ledger entry, update
the current-access row and queue the matching event (`AccessGranted`, `AccessRevoked`,
`AccessSuspended`, `AccessRestored`) through the outbox. A moment when access will end by itself
becomes a due row that the scheduler runs (`review_access`). Each grant whose access began or
ended is then handed to its delivery type's strategy (`delivery/runner.py`), in the same
transaction, so what delivery did or failed to do is recorded with the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import or_, update
from sqlmodel import Session, select

from postsale.contracts import (AccessGranted, AccessRestored, AccessRevoked, AccessSuspended, DisputeLost,
                                DisputeOpened, DisputeWon, ProductPublished, PurchaseCompleted, PurchaseRefunded,
                                SubscriptionCancellationScheduled, SubscriptionCancellationUndone,
                                SubscriptionCancelled, SubscriptionPastDue, SubscriptionPaused, SubscriptionResumed,
                                delivery_fields, delivery_kind_of)
from postsale.contracts.base import Event
from postsale.entitlements.adapters.tables import (AccessEntry, AccessFact, AccessReview, Customer, Grant, Product,
                                                   Purchase, PurchaseProduct)
from postsale.entitlements.config import SERVICE
from postsale.entitlements.delivery import strategy_for
from postsale.entitlements.delivery.runner import deliver_changes, note_change, retry_waiting
from postsale.entitlements.domain.access import (ACCESS_PERIOD_ENDED, GRANTED_BY_SELLER, PURCHASE, RECONCILIATION,
                                                 AccessState, Action, Fact, GrantView, Policy, Status, access_state,
                                                 available, change)
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.scheduler import wake
from postsale.runtime.web import normalize_email

SOURCE = f"/postsale/{SERVICE}"
REVIEWS = f"{SERVICE}-access-reviews"
"""The scheduler that runs `access_reviews` rows."""

_STATUS_AFTER: dict[Action, Status] = {"grant": "active", "restore": "active", "revoke": "revoked",
                                       "suspend": "suspended", "expire": "expired"}


class UnknownProduct(LookupError):
    pass


class UnknownGrant(LookupError):
    pass


class EmailNeeded(ValueError):
    """A manual grant to a customer entitlements has never seen: their email must be given."""


class EmailMismatch(ValueError):
    pass


class EndInThePast(ValueError):
    pass


@dataclass(frozen=True)
class Cause:
    """Who made a change and, when an event did, which one (its CloudEvents id and type)."""

    actor: str
    event_id: str | None = None
    event_type: str | None = None
    actor_id: str | None = None
    note: str | None = None


def _utc(moment: datetime | None) -> datetime | None:
    """In UTC, whatever zone the database handed it back in (SQLite: none)."""
    return as_utc(moment).astimezone(timezone.utc) if moment is not None else None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


# --- products ------------------------------------------------------------------------------


def delivery_settings(delivery_type: str, settings: dict | None) -> dict:
    """The settings of a product of `delivery_type`, checked and completed by its strategy (for
    instance a signing secret made for an integration); raises pydantic's ValidationError."""
    strategy = strategy_for(delivery_type)
    return strategy.configure(strategy.settings_model.model_validate(settings or {})).model_dump(mode="json")


def create_product(session: Session, *, name: str, delivery_type: str, description: str = "",
                   settings: dict | None = None) -> Product:
    """Creates a product with its delivery settings and publishes `ProductPublished`."""
    product = Product(id=_new_id("prod"), name=name, description=description, delivery_type=delivery_type,
                      delivery_settings=delivery_settings(delivery_type, settings))
    session.add(product)
    publish_later(
        session,
        ProductPublished(product_id=product.id, name=name, description=description,
                         **delivery_fields(delivery_type), published_at=product.created_at),
        source=SOURCE,
    )
    return product


def configure_delivery(session: Session, product_id: str, settings: dict | None) -> Product:
    """Replaces a product's delivery settings (what is left out takes its default). Deliveries
    already made stay as they were; waiting ones use the new settings at their next attempt."""
    product = session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise UnknownProduct(product_id)
    product.delivery_settings = delivery_settings(product.delivery_type, settings)
    product.updated_at = utcnow()
    session.add(product)
    return product


def retry_deliveries(session: Session, product_id: str, now: datetime | None = None) -> int:
    """The product's deliveries waiting for a retry are tried at once (the seller fixed what made
    them fail: uploaded the file, set the endpoint). Returns how many."""
    return retry_waiting(session, product_id, now or utcnow())


# --- what changes access -------------------------------------------------------------------


def grant_access_for_purchase(session: Session, event: PurchaseCompleted, event_id: str, *,
                              now: datetime | None = None) -> list[Grant]:
    """Started by `PurchaseCompleted`: a grant per product, each published as `AccessGranted`, for
    good or until the end of the offer's access period. Billing events about the purchase that
    arrived first (they travel on another topic) are applied at once. The same purchase arriving
    again (under another event id) changes nothing."""
    now = now or utcnow()
    customer = _lock_customer(session, event.customer_id, event.email)
    if session.get(Purchase, event.purchase_id) is not None:
        return []
    policy = event.access_policy
    purchase = Purchase(
        id=event.purchase_id, customer_id=event.customer_id, email=event.email, offer_id=event.offer_id,
        offer_name=event.offer_name, order_id=event.order_id, parent_purchase_id=event.parent_purchase_id,
        subscription_id=event.subscription_id, access_days=policy.access_days, on_cancel=policy.on_cancel,
        on_pause=policy.on_pause, on_partial_refund=policy.on_partial_refund, completed_at=event.completed_at,
        event_id=event_id,
    )
    session.add(purchase)
    for item in {item.product_id: item for item in event.products}.values():
        session.add(PurchaseProduct(purchase_id=event.purchase_id, product_id=item.product_id, name=item.name,
                                    delivery_type=delivery_kind_of(item)))
    cause = Cause("customer", event_id, event.event_type)
    granted_at = as_utc(event.completed_at)
    expires_at = policy_of(purchase).expires_at(granted_at)
    # Under a race with a replica, the purchase's primary key, the grants' unique constraint and the
    # ledger's partial unique index each refuse a second grant of a product of this purchase.
    grants: list[Grant] = []
    for item in event.products:
        if any(g.product_id == item.product_id for g in grants):
            continue
        grant = Grant(id=_new_id("grant"), customer_id=event.customer_id, product_id=item.product_id,
                      product_name=item.name, delivery_type=delivery_kind_of(item), source="purchase",
                      purchase_id=event.purchase_id, status="active", reason=PURCHASE, granted_at=granted_at,
                      expires_at=expires_at, changed_at=now, last_seq=0, cause_event_id=event_id,
                      cause_event_type=event.event_type)
        _record(session, customer, grant, "grant", PURCHASE, cause, now)
        grants.append(grant)
    # A change now is caused by the fact that arrived first (a refund, a billing event), not by the purchase.
    _apply_policy(session, customer, grants, now)
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


def grant_by_seller(session: Session, *, customer_id: str, product_id: str, days: int | None = None,
                    expires_at: datetime | None = None, note: str | None = None, email: str | None = None,
                    download_limit: int | None = None, now: datetime | None = None) -> Grant:
    """The seller gives a customer a product, for good, for `days` or until `expires_at`; billing is
    not touched. Published as `AccessGranted`. The customer's email is the one entitlements knows
    from their purchases; one it does not know needs `email`."""
    now = now or utcnow()
    if expires_at is not None and as_utc(expires_at) <= now:
        raise EndInThePast(f"expires_at {expires_at.isoformat()} is not in the future")
    product = session.get(Product, product_id)
    if product is None:
        raise UnknownProduct(product_id)
    known = session.get(Customer, customer_id)
    if known is None and not email:
        raise EmailNeeded(f"customer {customer_id} has bought nothing here yet: give their email")
    if known is not None and email and normalize_email(email) != normalize_email(known.email):
        raise EmailMismatch(f"customer {customer_id} has the email {known.email}, not {email}")
    customer = _lock_customer(session, customer_id, email if known is None else None)
    expires_at = as_utc(expires_at) if expires_at is not None else Policy(access_days=days).expires_at(now)
    grant = Grant(id=_new_id("grant"), customer_id=customer_id, product_id=product_id, product_name=product.name,
                  delivery_type=product.delivery_type, source="seller", status="active", reason=GRANTED_BY_SELLER,
                  granted_at=now, expires_at=expires_at, changed_at=now, last_seq=0, note=note,
                  download_limit=download_limit)
    cause = Cause("seller", note=note)
    _record(session, customer, grant, "grant", GRANTED_BY_SELLER, cause, now)
    _apply_policy(session, customer, [grant], now)  # schedules the end of its days
    return grant


def revoke_by_seller(session: Session, *, customer_id: str, grant_id: str, note: str | None = None,
                     effective_at: datetime | None = None, now: datetime | None = None) -> Grant:
    """The seller takes one grant back (a purchase's or their own), now or as of `effective_at`;
    billing is not touched and the customer's other grants of the product stay. Revoking a grant
    already revoked (or to be revoked sooner) changes nothing."""
    now = now or utcnow()
    effective_at = as_utc(effective_at) if effective_at is not None and as_utc(effective_at) > now else None
    grant = session.get(Grant, grant_id)
    if grant is None or grant.customer_id != customer_id:
        raise UnknownGrant(grant_id)
    customer = _lock_customer(session, customer_id)
    session.refresh(grant)
    earlier = session.exec(select(AccessFact).where(AccessFact.grant_id == grant_id,
                                                    AccessFact.kind == "seller_revoke")).all()
    if any(f.effective_at is None or (effective_at is not None and as_utc(f.effective_at) <= effective_at)
           for f in earlier):
        return grant
    cause = Cause("seller", note=note)
    fact = AccessFact(id=_new_id("fact"), grant_id=grant_id, kind="seller_revoke", occurred_at=now, actor="seller",
                      effective_at=effective_at, note=note, recorded_at=now)
    session.add(fact)
    _apply_policy(session, customer, [grant], now, cause=cause, trigger=domain_fact(fact))
    return grant


def revoke_product_by_seller(session: Session, *, customer_id: str, product_id: str, note: str | None = None,
                             effective_at: datetime | None = None, now: datetime | None = None) -> list[Grant]:
    """The seller takes a product back from a customer: every grant of it that still gives or may
    give it, now or as of `effective_at`; billing is not touched. Raises UnknownGrant when the
    customer never had the product."""
    now = now or utcnow()
    grants = session.exec(select(Grant).where(Grant.customer_id == customer_id, Grant.product_id == product_id)
                          .order_by(Grant.granted_at, Grant.id)).all()
    if not grants:
        raise UnknownGrant(f"customer {customer_id} has no grant of {product_id}")
    for grant in grants:
        if grant.status in ("active", "suspended"):
            revoke_by_seller(session, customer_id=customer_id, grant_id=grant.id, note=note,
                             effective_at=effective_at, now=now)
    return list(grants)


def set_download_limit(session: Session, *, customer_id: str, grant_id: str, download_limit: int | None) -> Grant:
    """Gives one grant a download limit of its own (None: the product's again)."""
    grant = session.get(Grant, grant_id)
    if grant is None or grant.customer_id != customer_id:
        raise UnknownGrant(grant_id)
    grant.download_limit = download_limit
    session.add(grant)
    return grant


def review_access(session: Session, row: AccessReview, now: datetime) -> None:
    """Run by the scheduler when a grant's access may end by itself: at the end of its access
    period (an `expire` entry, reason "access period ended") or when its billing ends (a `revoke`
    caused by the `SubscriptionCancelled`). Published as `AccessRevoked`. Safe to run again."""
    grant = session.get(Grant, row.grant_id)
    if grant is None or grant.status in ("revoked", "expired"):
        return
    customer = _lock_customer(session, grant.customer_id)
    session.refresh(grant)
    _apply_policy(session, customer, [grant], now)


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
    customer = _lock_customer(session, grant.customer_id)
    session.refresh(grant)
    _apply_policy(session, customer, [grant], now, cause=Cause("system", note=note), reason=RECONCILIATION)
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
    customer = _lock_customer(session, purchase.customer_id)
    existing = session.exec(select(Grant).where(Grant.purchase_id == purchase_id, Grant.product_id == product_id)).first()
    if existing is not None:
        return existing
    cause = Cause("system", purchase.event_id, PurchaseCompleted.event_type, note=note)
    earlier = session.exec(select(AccessEntry).where(AccessEntry.purchase_id == purchase_id,
                                                     AccessEntry.product_id == product_id,
                                                     AccessEntry.action == "grant")).first()
    product = session.get(Product, product_id)
    granted_at = as_utc(purchase.completed_at)
    grant = Grant(id=(earlier.grant_id if earlier and earlier.grant_id else None) or _new_id("grant"),
                  customer_id=purchase.customer_id, product_id=product_id,
                  product_name=product.name if product else item.name,
                  delivery_type=product.delivery_type if product else delivery_kind_of(item), source="purchase",
                  purchase_id=purchase_id, status="revoked" if earlier else "active",
                  reason="missing" if earlier else RECONCILIATION, granted_at=granted_at,
                  expires_at=policy_of(purchase).expires_at(granted_at), changed_at=now,
                  last_seq=earlier.seq if earlier else 0, cause_event_id=purchase.event_id,
                  cause_event_type=PurchaseCompleted.event_type)
    if earlier is None:
        _record(session, customer, grant, "grant", RECONCILIATION, cause, now)
    else:  # the ledger allows one grant per product of a purchase: the grant comes back as a restore
        session.add(grant)
        session.flush()
    _apply_policy(session, customer, [grant], now, cause=cause, reason=RECONCILIATION)
    return grant


def reconcile_orphan_grant(session: Session, *, grant_id: str, note: str, now: datetime | None = None) -> Grant | None:
    """An active grant whose purchase (or whose product in it) was never received: revoked."""
    now = now or utcnow()
    grant = session.get(Grant, grant_id)
    if grant is None:
        return None
    customer = _lock_customer(session, grant.customer_id)
    session.refresh(grant)
    fact = AccessFact(id=_new_id("fact"), grant_id=grant_id, kind="reconciliation_revoke", occurred_at=now,
                      actor="system", note=note, recorded_at=now)
    session.add(fact)
    _apply_policy(session, customer, [grant], now, cause=Cause("system", note=note), trigger=domain_fact(fact))
    return grant


# --- how a change is applied ---------------------------------------------------------------


def _lock_customer(session: Session, customer_id: str, email: str | None = None) -> Customer:
    """The customer's row, locked until the transaction ends (created when new). Taken first by
    every change: on PostgreSQL it orders one customer's changes, on SQLite it starts the write."""
    locked = session.execute(update(Customer).where(Customer.id == customer_id)
                             .values(ledger_seq=Customer.ledger_seq))  # type: ignore[arg-type]
    if locked.rowcount == 0:
        if email is None:
            raise LookupError(f"unknown customer {customer_id}")
        session.add(Customer(id=customer_id, email=email))
        session.flush()
    customer = session.get(Customer, customer_id, populate_existing=True)
    assert customer is not None
    if email and customer.email != email:
        customer.email = email  # the newest purchase's
        customer.updated_at = utcnow()
    return customer


def _on_fact(session: Session, event: Event, event_id: str, *, purchase_id: str, actor: str, kind: str,
             at: datetime, now: datetime | None, key: str = "", effective_at: datetime | None = None,
             detail: str | None = None) -> None:
    """Records what `event` says happened to a purchase, and applies the policy to its grants.
    A purchase not seen yet keeps the fact for when it arrives."""
    now = now or utcnow()
    customer = _lock_customer(session, event.customer_id, event.email)  # type: ignore[attr-defined]
    fact = AccessFact(id=_new_id("fact"), purchase_id=purchase_id, kind=kind, key=key, occurred_at=at,
                      effective_at=effective_at, detail=detail, actor=actor, cause_event_id=event_id,
                      cause_event_type=event.event_type, recorded_at=now)
    session.add(fact)
    grants = list(session.exec(select(Grant).where(Grant.purchase_id == purchase_id)).all())
    _apply_policy(session, customer, grants, now, cause=Cause(actor, event_id, event.event_type),
                  trigger=domain_fact(fact))


def policy_of(purchase: Purchase | None) -> Policy:
    if purchase is None:  # a seller's grant
        return Policy()
    return Policy(access_days=purchase.access_days, on_cancel=purchase.on_cancel,  # type: ignore[arg-type]
                  on_pause=purchase.on_pause, on_partial_refund=purchase.on_partial_refund)  # type: ignore[arg-type]


def domain_fact(row: AccessFact) -> Fact:
    return Fact(id=row.id, kind=row.kind, at=as_utc(row.occurred_at), key=row.key,  # type: ignore[arg-type]
                effective_at=as_utc(row.effective_at), detail=row.detail, received_at=as_utc(row.recorded_at))


def _apply_policy(session: Session, customer: Customer, grants: list[Grant], now: datetime, *,
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
    purchases = {p.id: p for p in session.exec(
        select(Purchase).where(Purchase.id.in_(purchase_ids))).all()}  # type: ignore[attr-defined]
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
            _record(session, customer, grant, step.action, reason or step.reason,
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


def _record(session: Session, customer: Customer, grant: Grant, action: Action, reason: str, cause: Cause,
            now: datetime) -> AccessEntry:
    """One ledger entry, numbered after the customer's previous one, the grant's new state, and
    the event that tells subscribers, all in the caller's transaction."""
    status_before = None if action == "grant" else grant.status
    customer.ledger_seq += 1
    entry = AccessEntry(id=_new_id("entry"), seq=customer.ledger_seq, customer_id=customer.id, email=customer.email,
                        product_id=grant.product_id, grant_id=grant.id, action=action, reason=reason,
                        actor=cause.actor, actor_id=cause.actor_id, note=cause.note, cause_event_id=cause.event_id,
                        cause_event_type=cause.event_type, purchase_id=grant.purchase_id, created_at=now,
                        expires_at=grant.expires_at)
    grant.status, grant.reason, grant.changed_at, grant.last_seq = _STATUS_AFTER[action], reason, now, entry.seq
    session.add_all([customer, grant, entry])
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


# --- what the customer and the seller see --------------------------------------------------


@dataclass
class ProductAccess:
    """One product of a customer: whether it is available, thanks to which grants, or why not."""

    product_id: str
    name: str
    description: str
    delivery_type: str
    available: bool
    until: datetime | None  # when available access ends by itself; None: it does not
    since: datetime | None  # when the oldest grant that gives it was given
    active: list[Grant]  # the grants that give it
    grants: list[Grant] = field(default_factory=list)  # every grant of it, newest change first
    unavailable_because: str | None = None  # the newest change that ended (or held) one of its grants
    unavailable_since: datetime | None = None


def _view(grant: Grant) -> GrantView:
    return GrantView(grant.id, grant.product_id, grant.status, as_utc(grant.ends_at))  # type: ignore[arg-type]


def why_granted(grant: Grant) -> str:
    return PURCHASE if grant.source == "purchase" else GRANTED_BY_SELLER


def customer_access(session: Session, customer_id: str, now: datetime | None = None) -> list[ProductAccess]:
    """Every product the customer has or had, available ones first (newest grant first), from the
    current-access table in one query."""
    now = now or utcnow()
    rows = session.exec(select(Grant, Product)
                        .join(Product, Product.id == Grant.product_id, isouter=True)  # type: ignore[arg-type]
                        .where(Grant.customer_id == customer_id)).all()
    products: dict[str, Product | None] = {}
    grants: dict[str, list[Grant]] = {}
    for grant, product in rows:
        products[grant.product_id] = product
        grants.setdefault(grant.product_id, []).append(grant)
    active = available((_view(g) for its_grants in grants.values() for g in its_grants), now)
    out = []
    for product_id, its_grants in grants.items():
        by_id = {g.id: g for g in its_grants}
        giving = sorted((by_id[v.grant_id] for v in active.get(product_id, [])), key=lambda g: as_utc(g.granted_at))
        its_grants.sort(key=lambda g: g.last_seq, reverse=True)
        ended = [g for g in its_grants if g not in giving]
        product = products[product_id]
        ends = [_utc(g.ends_at) for g in giving]
        out.append(ProductAccess(
            product_id=product_id, name=product.name if product else its_grants[0].product_name,
            description=product.description if product else "",
            delivery_type=product.delivery_type if product else its_grants[0].delivery_type,
            available=bool(giving), until=None if None in ends else max(ends, default=None),  # type: ignore[type-var]
            since=_utc(giving[0].granted_at) if giving else None, active=giving, grants=its_grants,
            unavailable_because=None if giving or not ended else _why_ended(ended[0]),
            unavailable_since=None if giving or not ended else _when_ended(ended[0]),
        ))
    latest = {p.product_id: max(as_utc(g.granted_at) for g in (p.active or p.grants)) for p in out}
    return sorted(out, key=lambda p: (not p.available, -latest[p.product_id].timestamp()))


def _why_ended(grant: Grant) -> str:
    # An active grant past its end that the scheduler has not recorded yet.
    if grant.status == "active" and grant.ends_at is not None:
        return grant.ends_because or ACCESS_PERIOD_ENDED
    return grant.reason


def _when_ended(grant: Grant) -> datetime:
    return _utc(grant.ends_at) if grant.status == "active" and grant.ends_at is not None else _utc(grant.changed_at)


def library(session: Session, customer_id: str, now: datetime | None = None) -> list[ProductAccess]:
    """The products a customer may use now, newest first."""
    return [p for p in customer_access(session, customer_id, now) if p.available]


def check_access(session: Session, customer_id: str, product_id: str, now: datetime | None = None) -> Grant | None:
    """The oldest active grant that gives the customer the product now, or None."""
    now = now or utcnow()
    grants = session.exec(select(Grant).where(Grant.customer_id == customer_id, Grant.product_id == product_id,
                                              Grant.status == "active")).all()
    views = available((_view(g) for g in grants), now)
    giving = {v.grant_id for v in views.get(product_id, [])}
    return min((g for g in grants if g.id in giving), key=lambda g: as_utc(g.granted_at), default=None)


def purchases_seen(session: Session, customer_id: str, purchase_ids: list[str]) -> set[str]:
    """Which of these purchases of the customer entitlements has received (and so granted)."""
    if not purchase_ids:
        return set()
    return set(session.exec(select(Purchase.id).where(Purchase.id.in_(purchase_ids),  # type: ignore[attr-defined]
                                                      Purchase.customer_id == customer_id)).all())


def customer_email(session: Session, customer_id: str) -> str | None:
    customer = session.get(Customer, customer_id)
    return customer.email if customer else None


def ledger(session: Session, customer_id: str) -> list[AccessEntry]:
    """Every change of a customer's access, in the order it happened."""
    return list(session.exec(
        select(AccessEntry).where(AccessEntry.customer_id == customer_id).order_by(AccessEntry.seq)
    ).all())
