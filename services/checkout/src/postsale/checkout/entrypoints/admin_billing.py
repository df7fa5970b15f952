"""The seller's billing API: subscriptions and payment plans, refunds, and the sandbox's
lifecycle simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from postsale.checkout import billing, card_expiry
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import (BillingJob, CardExpiryCheck, ChargeAttempt, Dispute, Payment,
                                               Purchase, Subscription)
from postsale.checkout.domain.billing_cycle import BillingError
from postsale.runtime.clock import as_utc
from postsale.runtime.db import SessionDep
from postsale.runtime.web import Moment, RequestBody, normalize_email, require_admin

admin_billing = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin: billing"])
MAX_SIMULATED_DAYS = 3660


class Money(BaseModel):
    amount: int
    currency: str


class PaymentOut(BaseModel):
    id: str
    kind: str
    amount: Money
    provider_payment_id: str
    paid_at: datetime


class AttemptOut(BaseModel):
    amount: Money
    succeeded: bool
    message: str | None
    next_retry_at: datetime | None
    attempted_at: datetime


class CardOut(BaseModel):
    brand: str | None
    last4: str
    exp_month: int
    exp_year: int


class SubscriptionOut(BaseModel):
    id: str
    kind: Literal["subscription", "payment_plan"]
    status: str = Field(description="`trialing`, `active`, `past_due`, `paused`, `cancelled` or `completed`.")
    purchase_id: str
    customer_id: str
    email: str
    offer_id: str
    amount: Money
    interval: str
    interval_count: int
    instalments_total: int | None
    instalments_paid: int
    trial_end: datetime | None
    current_period_start: datetime
    current_period_end: datetime
    next_charge_at: datetime | None
    cancel_at: datetime | None = Field(description="A pending (or the effective) cancellation.")
    cancel_reason: str | None
    ended_at: datetime | None
    card: CardOut | None = Field(description="The saved card renewals charge, as the provider describes it; "
                                             "empty until read, or for a method that is no card.")
    payments: list[PaymentOut]
    dunning: list[AttemptOut] = Field(description="Every charge attempt of renewals and instalments, failed or not.")


def subscription_out(session: Session, subscription: Subscription) -> SubscriptionOut:
    purchase = session.get(Purchase, subscription.purchase_id)
    cycle = billing.cycle_of(session, subscription)
    payments = session.exec(select(Payment).where(
        (Payment.subscription_id == subscription.id) | (Payment.id == purchase.payment_id)).order_by(Payment.paid_at)).all()
    attempts = session.exec(select(ChargeAttempt).where(ChargeAttempt.subscription_id == subscription.id)
                            .order_by(ChargeAttempt.attempted_at, ChargeAttempt.id)).all()
    return SubscriptionOut(
        id=subscription.id, kind=subscription.kind, status=subscription.status, purchase_id=purchase.id,
        customer_id=subscription.customer_id, email=purchase.email, offer_id=subscription.offer_id,
        amount=Money(amount=subscription.amount, currency=subscription.currency), interval=subscription.interval,
        interval_count=subscription.interval_count, instalments_total=subscription.instalments_total,
        instalments_paid=subscription.instalments_paid, trial_end=subscription.trial_end,
        current_period_start=subscription.current_period_start, current_period_end=subscription.current_period_end,
        next_charge_at=cycle.next_charge_at, cancel_at=subscription.cancel_at, cancel_reason=subscription.cancel_reason,
        ended_at=subscription.ended_at,
        card=CardOut(brand=subscription.card_brand, last4=subscription.card_last4, exp_month=subscription.card_exp_month,
                     exp_year=subscription.card_exp_year) if subscription.card_exp_year else None,
        payments=[PaymentOut(id=p.id, kind="first payment" if p.subscription_id is None
                             else "instalment" if subscription.kind == "payment_plan" else "renewal",
                             amount=Money(amount=p.amount, currency=p.currency),
                             provider_payment_id=p.provider_payment_id, paid_at=p.paid_at) for p in payments],
        dunning=[AttemptOut(amount=Money(amount=a.amount, currency=a.currency), succeeded=a.succeeded,
                            message=a.message, next_retry_at=a.next_retry_at, attempted_at=a.attempted_at)
                 for a in attempts],
    )


def _subscription_or_404(session: Session, subscription_id: str) -> Subscription:
    subscription = session.get(Subscription, subscription_id[:64], with_for_update=True)
    if subscription is None:
        raise HTTPException(status_code=404, detail=f"no subscription {subscription_id[:64]}")
    return subscription


@admin_billing.get("/subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(session: SessionDep, email: str | None = None) -> list[SubscriptionOut]:
    query = select(Subscription).order_by(Subscription.created_at)
    if email:
        purchases = select(Purchase.id).where(Purchase.email == (normalize_email(email[:254]) or email[:254]))
        query = query.where(Subscription.purchase_id.in_(purchases))  # type: ignore[attr-defined]
    return [subscription_out(session, s) for s in session.exec(query).all()]


@admin_billing.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(subscription_id: str, session: SessionDep) -> SubscriptionOut:
    return subscription_out(session, _subscription_or_404(session, subscription_id))


class Cancellation(RequestBody):
    when: Literal["now", "period_end", "date"] = Field(
        description="`now` (access per the offer's policy: revoked now by default), `period_end` (access to the end "
                    "of the paid period) or `date` (with `at`).")
    at: Moment | None = None
    reason: str | None = Field(default=None, max_length=500)


def _change(session: Session, subscription: Subscription, change) -> SubscriptionOut:
    try:
        change(billing.customer_now(session, subscription.customer_id))
    except BillingError as exc:
        session.rollback()
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return subscription_out(session, subscription)


@admin_billing.post("/subscriptions/{subscription_id}/cancel", response_model=SubscriptionOut)
def cancel(subscription_id: str, body: Cancellation, session: SessionDep) -> SubscriptionOut:
    subscription = _subscription_or_404(session, subscription_id)
    return _change(session, subscription, lambda now: billing.cancel_subscription(
        session, subscription, now, when=body.when, at=body.at, actor="seller", reason=body.reason))


@admin_billing.post("/subscriptions/{subscription_id}/undo-cancel", response_model=SubscriptionOut)
def undo_cancel(subscription_id: str, session: SessionDep) -> SubscriptionOut:
    subscription = _subscription_or_404(session, subscription_id)
    return _change(session, subscription, lambda now: billing.undo_cancellation(session, subscription, now,
                                                                                 actor="seller"))


@admin_billing.post("/subscriptions/{subscription_id}/pause", response_model=SubscriptionOut)
def pause(subscription_id: str, session: SessionDep) -> SubscriptionOut:
    subscription = _subscription_or_404(session, subscription_id)
    return _change(session, subscription, lambda now: billing.pause_subscription(session, subscription, now,
                                                                                  actor="seller"))


@admin_billing.post("/subscriptions/{subscription_id}/resume", response_model=SubscriptionOut)
def resume(subscription_id: str, session: SessionDep) -> SubscriptionOut:
    subscription = _subscription_or_404(session, subscription_id)

    def resume_and_watch_card(now: datetime) -> None:
        billing.resume_subscription(session, subscription, now, actor="seller")
        card_expiry.watch_again(session, subscription, now)  # the check that ran while paused warned of nothing

    return _change(session, subscription, resume_and_watch_card)


class NewRefund(RequestBody):
    amount: int | None = Field(default=None, gt=0, le=10**12, description="Minor units; empty: refund what is left.")
    reason: str | None = Field(default=None, max_length=500)


class RefundOut(BaseModel):
    id: str
    purchase_id: str
    amount: Money
    total_refunded: Money
    full: bool
    provider_refund_id: str


@admin_billing.post("/purchases/{purchase_id}/refunds", status_code=201, response_model=RefundOut)
def refund(purchase_id: str, body: NewRefund, request: Request, session: SessionDep) -> RefundOut:
    """Refunds through the payment provider; a full refund revokes access (the default policy)."""
    purchase = session.get(Purchase, purchase_id[:64], with_for_update=True)
    if purchase is None:
        raise HTTPException(status_code=404, detail=f"no purchase {purchase_id[:64]}")
    try:
        made = billing.refund_purchase(session, purchase, amount=body.amount, reason=body.reason,
                                       provider=request.app.state.payments,
                                       now=billing.customer_now(session, purchase.customer_id))
    except BillingError as exc:
        session.rollback()
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return RefundOut(id=made.id, purchase_id=purchase.id, amount=Money(amount=made.amount, currency=made.currency),
                     total_refunded=Money(amount=purchase.refunded, currency=purchase.currency),
                     full=purchase.refunded >= purchase.amount, provider_refund_id=made.provider_refund_id)


class ClockAdvance(RequestBody):
    customer_id: str = Field(min_length=1, max_length=64)
    advance_days: int = Field(ge=1, le=MAX_SIMULATED_DAYS)


class ClockOut(BaseModel):
    customer_id: str
    now: datetime = Field(description="The test customer's time after the move.")
    ran: int = Field(description="How many renewals, retries and cancellations happened on the way.")
    subscriptions: list[SubscriptionOut]


@admin_billing.post("/sandbox/clock", response_model=ClockOut, tags=["sandbox"])
def advance_clock(body: ClockAdvance, request: Request, session: SessionDep) -> ClockOut:
    """The lifecycle simulator: moves one test customer's time forward, and runs, in order and each
    at its own time, everything that falls due on the way. Only where no money moves: the sandbox,
    or Stripe's test mode (as Stripe's own test clocks)."""
    if not request.app.state.payments.test_mode:
        raise HTTPException(status_code=409, detail="The lifecycle simulator works only in a sandbox store or "
                                                    "on Stripe's test mode, where no money moves.")
    if session.exec(select(Purchase.id).where(Purchase.customer_id == body.customer_id)).first() is None:
        raise HTTPException(status_code=404, detail=f"no purchases of customer {body.customer_id}")
    clock = billing.simulated_clock(session, body.customer_id)
    session.commit()  # from now on the running scheduler leaves this customer to the simulator
    target = billing.customer_now(session, body.customer_id) + timedelta(days=body.advance_days)
    ran = 0
    while (step := _next_due(session, request, body.customer_id, target)) is not None:
        scheduler, table = step
        scheduler.run_one(until=target, where=table.customer_id == body.customer_id)
        ran += 1 if table is BillingJob else 0
    clock = billing.simulated_clock(session, body.customer_id)
    clock.offset_seconds += body.advance_days * 86400
    session.add(clock)
    session.commit()
    subscriptions = session.exec(select(Subscription).where(Subscription.customer_id == body.customer_id)
                                 .order_by(Subscription.created_at)).all()
    return ClockOut(customer_id=body.customer_id, now=as_utc(target), ran=ran,
                    subscriptions=[subscription_out(session, s) for s in subscriptions])


def _next_due(session: Session, request: Request, customer_id: str, until: datetime):
    """The scheduler and table of the customer's earliest row due by `until`: renewals, retries and
    cancellations, and card checks, each run in the order they fall due. None when nothing is."""
    state = request.app.state
    earliest = None
    for scheduler, table in ((state.billing_scheduler, BillingJob), (state.card_expiry_scheduler, CardExpiryCheck)):
        due_at = session.exec(select(table.due_at).where(table.customer_id == customer_id, table.done_at.is_(None),
                                                         table.due_at <= until)
                              .order_by(table.due_at).limit(1)).first()
        session.rollback()  # read, not held: the scheduler claims the row in its own transaction
        if due_at is not None and (earliest is None or as_utc(due_at) < earliest[0]):
            earliest = (as_utc(due_at), scheduler, table)
    return earliest[1:] if earliest else None


class DisputeDecision(RequestBody):
    outcome: Literal["won", "lost"]


@admin_billing.post("/sandbox/disputes/{dispute_id}", status_code=202, tags=["sandbox"])
def decide_dispute(dispute_id: str, body: DisputeDecision, request: Request, session: SessionDep) -> dict[str, str]:
    """The simulator's stand-in for the bank deciding a dispute (the 0259 card opens one). The
    outcome arrives as the provider's event does, a moment later."""
    provider = request.app.state.payments
    if not isinstance(provider, SandboxProvider):
        raise HTTPException(status_code=409, detail="Disputes are decided by the bank, except in a sandbox store.")
    dispute = session.get(Dispute, dispute_id[:64])
    if dispute is None or not provider.close_dispute(dispute.provider_dispute_id, won=body.outcome == "won"):
        raise HTTPException(status_code=404, detail=f"no open dispute {dispute_id[:64]}")
    return {"status": "deciding"}
