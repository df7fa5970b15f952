"""Runs the delivery strategies when access begins or ends, and records what happened.

The access use cases tell the runner of each ledger entry (`note_change`) and, at the end of the
change, ask it to deliver (`deliver_changes`). For each grant whose access really changed in the
transaction (a grant refunded in the same transaction it was made in changes nothing), it writes a
`Delivery` row in that transaction: the failure of a strategy is then as durable as the grant.
An inline strategy is attempted at once, inside a savepoint; the others, and every retry, are
`delivery_runs` rows run by the scheduler (`run_delivery`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import event as orm_events
from sqlalchemy import update
from sqlmodel import Session, select

from postsale.entitlements.adapters.tables import AccessEntry, Delivery, DeliveryAttempt, DeliveryRun, Grant, Product
from postsale.entitlements.config import SERVICE, DeliverySettings
from postsale.entitlements.delivery import strategy_for
from postsale.entitlements.delivery.base import (MAX_WAIT, RETRY_SCHEDULE, STILL_GIVEN, CustomerMustAct,
                                                 DeliveryContext, DeliveryFailed, DeliveryStrategy, Result, RetryLater,
                                                 still_given)
from postsale.runtime.clock import as_utc
from postsale.runtime.db import insert_once
from postsale.runtime.scheduler import wake
from postsale.runtime.settings import PublicUrls, from_environment

log = logging.getLogger(__name__)

DELIVERIES = f"{SERVICE}-deliveries"
"""The scheduler that runs `delivery_runs` rows."""

WAITING = ("pending", "retrying")
_CHANGES = "postsale_entitlements_access_changes"


@lru_cache(maxsize=1)
def default_settings() -> tuple[DeliverySettings, PublicUrls]:
    return from_environment(DeliverySettings), from_environment(PublicUrls)


@dataclass
class _Change:
    grant: Grant
    active_before: bool
    entry: AccessEntry | None = None


def note_change(session: Session, grant: Grant, status_before: str | None, entry: AccessEntry) -> None:
    """Runs inside the caller's transaction: remembers a ledger entry of `grant` for
    `deliver_changes`. `status_before` is the grant's status before the entry (None: a new grant)."""
    changes: dict[str, _Change] = session.info.setdefault(_CHANGES, {})
    change = changes.setdefault(grant.id, _Change(grant, status_before == "active"))
    change.entry = entry


def deliver_changes(session: Session, now: datetime) -> list[Delivery]:
    """Runs inside the caller's transaction: a delivery for each grant noted since the last call
    whose access began or ended, attempted at once by an inline strategy, else queued."""
    changes: dict[str, _Change] = session.info.pop(_CHANGES, {})
    settings, urls = default_settings()
    made = []
    for change in changes.values():
        active_now = change.grant.status == "active"
        if active_now == change.active_before or change.entry is None:
            continue
        made.append(_deliver(session, change.grant, change.entry, "grant" if active_now else "revoke", now,
                             settings, urls))
    return made


def _deliver(session: Session, grant: Grant, entry: AccessEntry, action: str, now: datetime,
             settings: DeliverySettings, urls: PublicUrls) -> Delivery:
    product = session.get(Product, grant.product_id)
    delivery_type = product.delivery_type if product is not None else grant.delivery_type
    strategy = strategy_for(delivery_type)
    delivery = Delivery(id=f"dlv_{uuid.uuid4().hex[:20]}", customer_id=grant.customer_id, email=entry.email,
                        product_id=grant.product_id, grant_id=grant.id, purchase_id=grant.purchase_id,
                        delivery_type=delivery_type, action=action, ledger_action=entry.action, entry_id=entry.id,
                        reason=entry.reason, status="pending", created_at=now, updated_at=now)
    if strategy.one_per_product and action == "revoke" and \
            still_given(session, grant.customer_id, grant.product_id, grant.id, now):
        # The customer keeps the product: nothing to tell, and nothing waiting to supersede.
        delivery.status, delivery.detail, delivery.finished_at = "skipped", STILL_GIVEN, now
        session.add(delivery)
        return delivery
    if strategy.one_per_product:
        session.execute(update(Delivery).where(
            Delivery.customer_id == grant.customer_id, Delivery.product_id == grant.product_id,  # type: ignore[arg-type]
            Delivery.status.in_(WAITING)).values(  # type: ignore[attr-defined]
            status="superseded", detail=f"superseded by {delivery.id}", finished_at=now, updated_at=now,
            next_attempt_at=None))
    if strategy.runs_inline:
        # Added by the attempt with its outcome: one INSERT, not an INSERT and then an UPDATE.
        attempt(DeliveryContext(session, now, settings, urls), delivery, strategy)
    else:
        session.add(delivery)
        _schedule(session, delivery, now)
    return delivery


def _schedule(session: Session, delivery: Delivery, at: datetime) -> None:
    delivery.next_attempt_at = at
    session.add(DeliveryRun(id=f"run_{delivery.id}_{delivery.attempts + 1}", due_at=at, delivery_id=delivery.id))
    wake(session, DELIVERIES)


def attempt(ctx: DeliveryContext, delivery: Delivery, strategy: DeliveryStrategy) -> DeliveryAttempt:
    """One attempt of `delivery`, recorded, with its next attempt scheduled when it may succeed later.
    Runs inside the caller's transaction; the strategy's own writes are undone if it fails."""
    session, now = ctx.session, ctx.now
    session.flush()  # the caller's own changes fail here, as theirs, not as the strategy's
    number = delivery.attempts + 1
    started = time.monotonic()
    after: timedelta | None = None
    status_code: int | None = None
    try:
        strategy.prepare(ctx, delivery)
        with session.begin_nested():
            result: Result = strategy.grant(ctx, delivery) if delivery.action == "grant" else \
                strategy.revoke(ctx, delivery)
        outcome, detail, status_code = result.status, result.detail, result.status_code
    except RetryLater as exc:
        outcome, detail, after, status_code = "retry", str(exc), exc.after, exc.status_code
    except CustomerMustAct as exc:
        outcome, detail = "needs_customer", str(exc)
    except DeliveryFailed as exc:
        outcome, detail, status_code = "failed", str(exc), exc.status_code
    except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried like any other
        log.exception("%s delivery %s failed", delivery.delivery_type, delivery.id)
        outcome, detail = "retry", f"{type(exc).__name__}: {exc}"
    detail = (detail or "")[:2000]
    record = DeliveryAttempt(id=f"att_{uuid.uuid4().hex[:20]}", delivery_id=delivery.id, attempt=number,
                             started_at=now, outcome=outcome, status_code=status_code, detail=detail or None,
                             duration_ms=int((time.monotonic() - started) * 1000))
    delivery.attempts, delivery.detail, delivery.updated_at = number, detail or None, now
    delivery.next_attempt_at = None
    if outcome == "retry" and number > len(RETRY_SCHEDULE):
        outcome = "failed"
    if outcome == "retry":
        delivery.status = "retrying"
        wait = max(RETRY_SCHEDULE[number - 1], min(after or timedelta(0), MAX_WAIT))
        _schedule(session, delivery, now + wait)
    else:
        delivery.status = outcome
        delivery.finished_at = now
    session.add(delivery)
    insert_once(session, record)  # never changed after: one plain statement, not the unit of work
    if outcome in ("retry", "failed"):
        strategy.failed_attempt(ctx, delivery, detail, delivery.next_attempt_at)
    return record


def run_delivery(session: Session, row: DeliveryRun, now: datetime, *, settings: DeliverySettings | None = None,
                 urls: PublicUrls | None = None, http=None) -> None:
    """Run by the scheduler for a due `delivery_runs` row: the delivery's next attempt, unless it
    was superseded or finished meanwhile. Safe to run again."""
    delivery = session.get(Delivery, row.delivery_id, with_for_update=True)
    if delivery is None or delivery.status not in WAITING:
        return
    defaults = default_settings()
    ctx = DeliveryContext(session, now, settings or defaults[0], urls or defaults[1], http)
    attempt(ctx, delivery, strategy_for(delivery.delivery_type))


def retry_waiting(session: Session, product_id: str, now: datetime) -> int:
    """Runs inside the caller's transaction: the product's waiting deliveries are due now (the
    seller fixed what made them fail). Returns how many."""
    waiting = session.exec(select(Delivery).where(Delivery.product_id == product_id,
                                                  Delivery.status.in_(WAITING))).all()  # type: ignore[attr-defined]
    ids = [d.id for d in waiting]
    if not ids:
        return 0
    session.execute(update(DeliveryRun).where(DeliveryRun.delivery_id.in_(ids),  # type: ignore[attr-defined]
                                              DeliveryRun.done_at.is_(None)).values(due_at=now))  # type: ignore[union-attr]
    for delivery in waiting:
        delivery.next_attempt_at = now
        session.add(delivery)
    wake(session, DELIVERIES)
    return len(ids)


def deliveries_of(session: Session, product_id: str, *, customer_id: str | None = None,
                  limit: int = 200) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    """The product's deliveries (to one customer, when given), newest first, each with its
    attempts in order.

    One statement, so one snapshot even in READ COMMITTED: read in two, an attempt committed
    between them would show beside its delivery's state from before it (a retry listed with the
    previous `next_attempt_at`)."""
    newest = select(Delivery.id).where(Delivery.product_id == product_id)
    if customer_id is not None:
        newest = newest.where(Delivery.customer_id == customer_id)
    newest = newest.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)  # type: ignore[attr-defined]
    rows = session.exec(
        select(Delivery, DeliveryAttempt)
        .outerjoin(DeliveryAttempt, DeliveryAttempt.delivery_id == Delivery.id)  # type: ignore[arg-type]
        .where(Delivery.id.in_(newest.scalar_subquery()))  # type: ignore[attr-defined]
        .order_by(Delivery.created_at.desc(), Delivery.id.desc(), DeliveryAttempt.attempt)  # type: ignore[attr-defined]
    ).all()
    listed: dict[str, tuple[Delivery, list[DeliveryAttempt]]] = {}
    for delivery, attempt in rows:
        _, attempts = listed.setdefault(delivery.id, (delivery, []))
        if attempt is not None:
            attempts.append(attempt)
    return list(listed.values())


def next_attempt(delivery: Delivery) -> datetime | None:
    return as_utc(delivery.next_attempt_at)


@orm_events.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_CHANGES, None)
