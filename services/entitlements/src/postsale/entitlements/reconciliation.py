"""Reconciliation: the purchases entitlements received, compared with its grants, and repaired.

Entitlements cannot read checkout's database, so it compares what the purchase events it consumed
said (each `PurchaseCompleted`, with its products and policy, and every refund, dispute and billing
event since) with the grants it keeps. A purchase event that never reached entitlements leaves
nothing here to compare: it is found with the outbox and dead-letter tooling (`deadletters list
checkout` shows parked outbox rows, `deadletters list entitlements` records that failed here), and
granted once replayed.

`reconcile` reads purchases in batches, reports each mismatch with its cause, and with `repair`
fixes each through the normal use cases (`handlers.reconcile_*`: ledger entries by `system`,
reason `reconciliation`), one customer at a time, checking again under the customer's lock first.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, or_, select

from postsale.entitlements import changes, handlers
from postsale.entitlements.adapters.tables import AccessFact, Grant, Purchase, PurchaseProduct, ReconciliationRun
from postsale.entitlements.config import SERVICE, DeliverySettings
from postsale.entitlements.domain.reconciliation import Finding, GrantSnapshot, compare_purchase, orphan_grant
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.scheduler import wake
from postsale.runtime.settings import from_environment

log = logging.getLogger(__name__)
RECONCILIATIONS = f"{SERVICE}-reconciliations"
"""The scheduler that runs `reconciliation_runs` rows."""

Progress = Callable[[int, int], None]


@dataclass
class Report:
    purchases: int = 0
    grants: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: list[Finding] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if f not in self.repaired]

    def as_dict(self) -> dict:
        return {"purchases": self.purchases, "grants": self.grants,
                "findings": [f.as_dict() | {"repaired": f in self.repaired} for f in self.findings]}


def _snapshot(grant: Grant) -> GrantSnapshot:
    return GrantSnapshot(grant.id, grant.product_id, grant.status, grant.reason, as_utc(grant.expires_at),
                         as_utc(grant.ends_at))


def find_in_purchases(session: Session, purchase_ids: list[str], now: datetime) -> list[Finding]:
    """The mismatches of these purchases and their grants."""
    purchases = session.exec(select(Purchase).where(col(Purchase.id).in_(purchase_ids))).all()
    products: dict[str, list[str]] = {}
    for item in session.exec(select(PurchaseProduct).where(col(PurchaseProduct.purchase_id).in_(purchase_ids))
                             .order_by(PurchaseProduct.purchase_id, PurchaseProduct.product_id)).all():
        products.setdefault(item.purchase_id, []).append(item.product_id)
    grants: dict[str, list[Grant]] = {}
    for grant in session.exec(select(Grant).where(col(Grant.purchase_id).in_(purchase_ids))).all():
        grants.setdefault(grant.purchase_id or "", []).append(grant)
    grant_ids = [g.id for its in grants.values() for g in its]
    facts = session.exec(select(AccessFact).where(or_(col(AccessFact.purchase_id).in_(purchase_ids),
                                                      col(AccessFact.grant_id).in_(grant_ids)))).all()
    found: list[Finding] = []
    for purchase in purchases:
        its_grants = grants.get(purchase.id, [])
        mine = {g.id for g in its_grants}
        its_facts = [changes.domain_fact(f) for f in facts if f.purchase_id == purchase.id or f.grant_id in mine]
        found += compare_purchase(customer_id=purchase.customer_id, purchase_id=purchase.id,
                                  completed_at=as_utc(purchase.completed_at),  # type: ignore[arg-type]
                                  policy=changes.policy_of(purchase), products=products.get(purchase.id, []),
                                  grants=[_snapshot(g) for g in its_grants], facts=its_facts, now=now)
    return found


def find_orphans(session: Session) -> list[Finding]:
    """Active grants of purchases entitlements never received."""
    rows = session.exec(select(Grant).outerjoin(Purchase, col(Purchase.id) == Grant.purchase_id)
                        .where(Grant.source == "purchase", Grant.status == "active", col(Purchase.id).is_(None))).all()
    return [orphan_grant(g.customer_id, _snapshot(g), g.purchase_id or "?") for g in rows]


def repair(session: Session, finding: Finding, now: datetime) -> bool:
    """Fixes one mismatch through the use cases, if it still stands under the customer's lock.
    Runs inside the caller's transaction; True when something changed."""
    note = f"reconciliation: {finding.kind.replace('_', ' ')}: {finding.cause}"
    if finding.purchase_id is not None and session.get(Purchase, finding.purchase_id) is None:
        if finding.grant_id is None:
            return False
        handlers.reconcile_orphan_grant(session, grant_id=finding.grant_id, note=note, now=now)
        return True
    if finding.cause == "the purchase did not buy this product" and finding.grant_id is not None:
        handlers.reconcile_orphan_grant(session, grant_id=finding.grant_id, note=note, now=now)
        return True
    still = [f for f in find_in_purchases(session, [finding.purchase_id or ""], now)
             if (f.product_id, f.kind) == (finding.product_id, finding.kind)]
    if not still:
        return False
    if finding.grant_id is None:
        handlers.reconcile_missing_grant(session, purchase_id=finding.purchase_id or "", product_id=finding.product_id,
                                         note=note, now=now)
    else:
        handlers.reconcile_grant(session, grant_id=finding.grant_id, note=note, now=now)
    return True


def reconcile(engine: Engine, *, repair_them: bool = False, now: datetime | None = None,
              progress: Progress | None = None, batch_size: int = 500) -> Report:
    """Compares every purchase received with its grants, batch by batch, and repairs what it finds
    when asked (each repair in its own transaction)."""
    now = now or utcnow()
    report = Report()
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(Purchase)).one()
        report.grants = session.exec(select(func.count()).select_from(Grant)).one()
    after = ""
    while True:
        with Session(engine) as session:
            ids = list(session.exec(select(Purchase.id).where(Purchase.id > after).order_by(Purchase.id)
                                    .limit(batch_size)).all())
            if not ids:
                break
            report.findings += find_in_purchases(session, ids, now)
        after = ids[-1]
        report.purchases += len(ids)
        if progress is not None:
            progress(report.purchases, total)
    with Session(engine) as session:
        report.findings += find_orphans(session)
    if repair_them:
        for finding in report.findings:
            with Session(engine) as session:
                try:
                    if repair(session, finding, now):
                        session.commit()
                        report.repaired.append(finding)
                except Exception:  # noqa: BLE001 - one failed repair must not stop the others
                    session.rollback()
                    log.exception("reconciliation could not repair %s", finding)
    return report


# --- the scheduled job -----------------------------------------------------------------------


def schedule_next_run(session: Session, now: datetime, interval: timedelta) -> ReconciliationRun | None:
    """Runs inside the caller's transaction: the next run, at the next multiple of `interval`, unless
    one is pending. Replicas asking at once agree on its id."""
    pending = session.exec(select(ReconciliationRun).where(col(ReconciliationRun.done_at).is_(None))).first()
    if pending is not None:
        return pending
    seconds = interval.total_seconds()
    due = datetime.fromtimestamp((now.timestamp() // seconds + 1) * seconds, tz=now.tzinfo)
    row = ReconciliationRun(id=f"reconcile_{int(due.timestamp())}", due_at=due)
    session.add(row)
    wake(session, RECONCILIATIONS)
    return row


def ensure_scheduled(engine: Engine, interval: timedelta, now: datetime | None = None) -> None:
    with Session(engine) as session:
        schedule_next_run(session, now or utcnow(), interval)
        try:
            session.commit()
        except IntegrityError:  # another replica made it
            session.rollback()


def run_scheduled(session: Session, row: ReconciliationRun, now: datetime, *,
                  settings: DeliverySettings | None = None) -> None:
    """Run by the scheduler for a due `reconciliation_runs` row: reconciles (repairing when
    `ENTITLEMENTS_RECONCILE_REPAIR` says so), keeps the report on the row, logs each finding, and
    schedules the next run."""
    settings = settings or from_environment(DeliverySettings)
    report = reconcile(session.get_bind(), repair_them=settings.reconcile_repair, now=now)  # type: ignore[arg-type]
    row.checked, row.mismatches, row.repaired = report.purchases, len(report.findings), len(report.repaired)
    row.report = json.dumps(report.as_dict())
    for finding in report.findings:
        log.warning("reconciliation: %s: customer %s, product %s, purchase %s: %s%s", finding.kind,
                    finding.customer_id, finding.product_id, finding.purchase_id, finding.cause,
                    " (repaired)" if finding in report.repaired else "")
    row.done_at = now
    session.add(row)
    session.flush()
    # After this run's own slot, even when it ran early (the lifecycle of a test, a clock behind).
    schedule_next_run(session, max(now, as_utc(row.due_at)), timedelta(hours=settings.reconcile_interval_hours))


def latest_run(session: Session) -> tuple[ReconciliationRun | None, ReconciliationRun | None]:
    """The newest finished run and the pending one."""
    done = session.exec(select(ReconciliationRun).where(col(ReconciliationRun.done_at).is_not(None))
                        .order_by(col(ReconciliationRun.done_at).desc())).first()
    pending = session.exec(select(ReconciliationRun).where(col(ReconciliationRun.done_at).is_(None))).first()
    return done, pending
