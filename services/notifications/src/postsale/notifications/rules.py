"""Follow-up offers by what the customer did: a rule names a trigger and an email with a link to
an offer. Triggers: bought offer A but not B within N days; has not logged in N days after buying
A; declined an upsell; finished a product. Each cause plans one row on the follow-ups' scheduler
(keyed by rule and cause, so it fires once), due when the rule can be decided; the decision reads
what the events said by then. Marketing emails: an unsubscribed address gets none; nor does a
customer who has bought the linked offer already. Each use case runs inside the caller's
transaction and never commits."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlmodel import Session, select

from postsale.contracts import CustomerActivity, ProductCompleted, PurchaseCompleted, UpsellDeclined
from postsale.notifications import access
from postsale.notifications.adapters.tables import FollowUp, FollowUpRule, LastLogin, PurchaseRecord
from postsale.notifications.domain import followups as decide
from postsale.notifications.sequences import queue_follow_up
from postsale.runtime.clock import as_utc
from postsale.runtime.db import remembered
from postsale.runtime.scheduler import wake

log = logging.getLogger(__name__)


def create_rule(session: Session, **fields) -> FollowUpRule:
    rule = FollowUpRule(id=f"rule_{uuid.uuid4().hex[:16]}", **fields)
    session.add(rule)
    return rule


def plan_rules(session: Session, event: PurchaseCompleted) -> None:
    """Part of `PurchaseCompleted`: the rules about what follows buying this offer are decided N days later."""
    for rule in _rules(session, ("bought_without", "no_login"), offer_id=event.offer_id):
        _plan(session, rule, cause=event.purchase_id, at=event.completed_at + timedelta(days=rule.days or 0),
              customer_id=event.customer_id, to=event.email, purchase_id=event.purchase_id, moment=event.completed_at)


def on_upsell_declined(session: Session, event: UpsellDeclined, _event_id: str) -> None:
    """Started by `UpsellDeclined`: rules about this upsell (or any) fire after their delay."""
    for rule in _rules(session, ("upsell_declined",), offer_id=event.offer_id):
        _plan(session, rule, cause=f"{event.purchase_id}:{event.offer_id}",
              at=event.declined_at + timedelta(days=rule.days or 0), customer_id=event.customer_id, to=event.email,
              purchase_id=event.purchase_id, moment=event.declined_at)


def on_product_completed(session: Session, event: ProductCompleted, _event_id: str) -> None:
    """Started by `ProductCompleted`: rules about finishing this product fire after their delay."""
    rules = session.exec(select(FollowUpRule).where(FollowUpRule.trigger == "product_completed",
                                                    FollowUpRule.product_id == event.product_id)).all()
    for rule in rules:
        _plan(session, rule, cause=f"{event.customer_id}:{event.product_id}",
              at=event.completed_at + timedelta(days=rule.days or 0), customer_id=event.customer_id, to=event.email,
              purchase_id=None, moment=event.completed_at)


def on_customer_activity(session: Session, event: CustomerActivity, _event_id: str) -> None:
    """Started by `CustomerActivity`: a login is kept, for the rule "has not logged in"."""
    if event.kind != "login":
        return
    row = session.get(LastLogin, event.customer_id, with_for_update=True)
    if row is None:
        session.add(LastLogin(customer_id=event.customer_id, logged_in_at=event.occurred_at))
    elif as_utc(row.logged_in_at) < event.occurred_at:
        row.logged_in_at = event.occurred_at
        session.add(row)


def check_rule(session: Session, row: FollowUp, now: datetime) -> None:
    """Run when the rule can be decided: queues the follow-up offer if the rule holds."""
    rule = session.get(FollowUpRule, row.rule_id or "")
    why_not = _why_not(session, rule, row) if rule else "the rule was deleted"
    if why_not or rule is None:
        log.info("follow-up offer %s not sent: %s", row.id, why_not)
        return
    queue_follow_up(session, row, rule.template, offer_id=rule.link_offer_id, step=None)


def _why_not(session: Session, rule: FollowUpRule, row: FollowUp) -> str | None:
    moment = as_utc(row.moment) or as_utc(row.planned_at)
    if _bought(session, row.customer_id, rule.link_offer_id):
        return "the customer has bought the offer it links to"
    if rule.trigger == "bought_without":
        bought = [as_utc(at) for at in session.exec(select(PurchaseRecord.completed_at).where(
            PurchaseRecord.customer_id == row.customer_id, PurchaseRecord.offer_id == rule.other_offer_id)).all()]
        if not decide.bought_without(bought_at=moment, other_purchases=bought, days=rule.days or 0):
            return f"the customer bought {rule.other_offer_id} within {rule.days} days"
    if rule.trigger == "no_login":
        login = session.get(LastLogin, row.customer_id)
        if not decide.not_logged_in(bought_at=moment, last_login=as_utc(login.logged_in_at) if login else None):
            return "the customer logged in since buying"
    if rule.trigger == "upsell_declined" and rule.offer_id and _bought(session, row.customer_id, rule.offer_id):
        return "the customer took the upsell after all"
    return None


def _bought(session: Session, customer_id: str, offer_id: str) -> bool:
    return session.exec(select(PurchaseRecord.id).where(PurchaseRecord.customer_id == customer_id,
                                                        PurchaseRecord.offer_id == offer_id)).first() is not None


def _rules(session: Session, triggers: tuple[str, ...], *, offer_id: str) -> list[FollowUpRule]:
    """The rules of these triggers about the offer; an upsell rule without an offer is about any."""
    found = remembered(session, FollowUpRule, triggers, lambda: session.exec(
        select(FollowUpRule).where(FollowUpRule.trigger.in_(triggers))).all())  # type: ignore[attr-defined]
    return [r for r in found if r.offer_id == offer_id or (r.trigger == "upsell_declined" and r.offer_id is None)]


def _plan(session: Session, rule: FollowUpRule, *, cause: str, at: datetime, customer_id: str, to: str,
          purchase_id: str | None, moment: datetime) -> None:
    key = f"follow-up-offer:{rule.id}:{cause}"
    if session.get(FollowUp, key) is None:
        session.add(FollowUp(id=key, due_at=at, kind="rule", customer_id=customer_id, to=to, purchase_id=purchase_id,
                             offer_id=rule.link_offer_id, rule_id=rule.id, moment=moment, planned_at=moment))
        wake(session, access.FOLLOW_UPS)
