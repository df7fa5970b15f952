"""Billing use cases after the first payment: renewals and instalments, dunning, cancellations,
pauses, refunds and the sandbox's lifecycle simulator.

Each runs inside the caller's transaction and never commits. Those that charge or refund take
the payment provider (the port) as an argument and call it inside the transaction, holding the
subscription's row, so that two schedulers never charge one period twice; every call carries an
idempotency key per subscription, period and attempt, so a crash between the provider's answer
and the commit resolves to one payment when the job runs again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

from sqlmodel import Session, select

from postsale.checkout.adapters.payments.port import (
    PaymentProvider,
    PaymentResult,
    ProviderDispute,
    ProviderRefund,
    WebhookEvent,
)
from postsale.checkout.adapters.tables import (
    BillingJob,
    ChargeAttempt,
    Coupon,
    Dispute,
    Offer,
    Payment,
    ProviderEvent,
    Purchase,
    Refund,
    SimulatedClock,
    Subscription,
)
from postsale.checkout.config import SERVICE
from postsale.checkout.domain import billing_cycle
from postsale.checkout.domain.billing_cycle import BillingError, ChargeDue, Cycle
from postsale.checkout.provider_payment_lock import hold_provider_payment
from postsale.checkout.records import coupon_rules, offer_terms
from postsale.contracts import (
    DisputeLost,
    DisputeOpened,
    DisputeWon,
    Money,
    PaymentFailed,
    PaymentSucceeded,
    PurchaseRefunded,
    SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone,
    SubscriptionCancelled,
    SubscriptionPastDue,
    SubscriptionPaused,
    SubscriptionResumed,
)
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.scheduler import end_pending, wake

SOURCE = f"/postsale/{SERVICE}"
SCHEDULER = "billing-scheduler"
Actor = Literal["customer", "seller", "system", "provider"]


# --- time -----------------------------------------------------------------------------------


def customer_now(session: Session, customer_id: str, now: datetime | None = None) -> datetime:
    """The customer's time: the wall clock, moved on for a test customer of the simulator."""
    clock = session.get(SimulatedClock, customer_id)
    return (now or utcnow()) + timedelta(seconds=clock.offset_seconds if clock else 0)


# --- the cycle and its schedule -------------------------------------------------------------


def cycle_of(session: Session, subscription: Subscription) -> Cycle:
    offer = session.get(Offer, subscription.offer_id)
    return Cycle(
        kind=subscription.kind, status=subscription.status, terms=offer_terms(offer),  # type: ignore[arg-type]
        period_start=as_utc(subscription.current_period_start), period_end=as_utc(subscription.current_period_end),
        instalments_paid=subscription.instalments_paid, cancel_at=as_utc(subscription.cancel_at),
        failed_since=as_utc(subscription.failed_since), failures=subscription.failures,
        retry_at=as_utc(subscription.retry_at), paused_at=as_utc(subscription.paused_at),
    )


def store(session: Session, subscription: Subscription, cycle: Cycle, now: datetime) -> None:
    """Writes the cycle back and puts the subscription's next moment on the schedule."""
    subscription.status = cycle.status
    subscription.current_period_start, subscription.current_period_end = cycle.period_start, cycle.period_end
    subscription.instalments_paid = cycle.instalments_paid
    subscription.cancel_at = cycle.cancel_at
    subscription.failed_since, subscription.failures, subscription.retry_at = (
        cycle.failed_since, cycle.failures, cycle.retry_at)
    subscription.paused_at = cycle.paused_at
    if cycle.status in ("cancelled", "completed") and subscription.ended_at is None:
        subscription.ended_at = now
    session.add(subscription)
    end_pending(session, BillingJob, BillingJob.subscription_id == subscription.id, now=now)
    if cycle.next_event_at is not None:
        session.add(BillingJob(id=f"bj_{uuid.uuid4().hex[:16]}", subscription_id=subscription.id,
                               customer_id=subscription.customer_id, due_at=cycle.next_event_at))
        wake(session, SCHEDULER)


def billing_fields(session: Session, subscription: Subscription) -> dict:
    purchase = session.get(Purchase, subscription.purchase_id)
    return {"subscription_id": subscription.id, "billing": subscription.kind, "purchase_id": purchase.id,
            "customer_id": subscription.customer_id, "email": purchase.email, "offer_id": subscription.offer_id}


# --- renewals, instalments and dunning ------------------------------------------------------


def run_billing_job(session: Session, job: BillingJob, now: datetime, *, provider: PaymentProvider) -> None:
    """Started by the scheduler when a subscription's next moment is due: charges the renewal,
    instalment or retry, or ends a pending cancellation; then schedules the next moment."""
    subscription = session.get(Subscription, job.subscription_id, with_for_update=True)
    cycle = cycle_of(session, subscription)
    decision = billing_cycle.due(cycle, now)
    if decision == "cancel":
        _end(session, subscription, cycle, now, effective_at=cycle.cancel_at or now,
             actor=subscription.cancel_actor or "system", reason=subscription.cancel_reason)
    elif isinstance(decision, ChargeDue):
        _charge(session, subscription, cycle, decision, now, provider=provider)
    else:
        store(session, subscription, cycle, now)  # nothing due (paused, moved): reschedule only


def period_amount(session: Session, subscription: Subscription) -> int:
    """The period's price, less the coupon while its periods last: what the next charge asks (the
    dashboard's MRR and a purchase's payments due read it too)."""
    if not subscription.coupon_code or subscription.discounted_periods_left == 0:
        return subscription.amount
    coupon = session.exec(select(Coupon).where(Coupon.code == subscription.coupon_code)).first()
    if coupon is None:
        return subscription.amount
    return subscription.amount - coupon_rules(coupon).discount(subscription.amount)


def _charge(session: Session, subscription: Subscription, cycle: Cycle, charge: ChargeDue, now: datetime, *,
            provider: PaymentProvider) -> None:
    amount = period_amount(session, subscription)
    purchase = session.get(Purchase, subscription.purchase_id)
    key = f"{subscription.id}:period:{charge.period_start.isoformat()}:attempt:{cycle.failures + 1}"
    result = provider.charge_saved(payment_method_id=subscription.payment_method_id or "",
                                   customer_ref=subscription.customer_ref, amount=amount,
                                   currency=subscription.currency, attempt_id=purchase.checkout_session_id,
                                   idempotency_key=key)
    kind = "instalment" if subscription.kind == "payment_plan" else "renewal"
    fields = billing_fields(session, subscription)
    if result.succeeded:
        payment = Payment(id=f"pay_{uuid.uuid4().hex[:16]}", checkout_session_id=purchase.checkout_session_id,
                          step=f"period:{subscription.id}:{charge.period_start.isoformat()}",
                          subscription_id=subscription.id, amount=amount, currency=subscription.currency,
                          provider=provider.name, provider_payment_id=result.payment_id or "", paid_at=now)
        session.add(payment)
        session.add(ChargeAttempt(subscription_id=subscription.id, idempotency_key=key, amount=amount,
                                  currency=subscription.currency, succeeded=True, attempted_at=now))
        replay_waiting_events(session, payment.provider_payment_id, provider=provider.name, now=now)
        if subscription.discounted_periods_left:
            subscription.discounted_periods_left -= 1
        updated = billing_cycle.charge_succeeded(cycle, charge)
        store(session, subscription, updated, now)
        publish_later(session, PaymentSucceeded(
            **fields, payment_id=payment.id, kind=kind, amount=Money(amount=amount, currency=subscription.currency),
            instalment_number=charge.instalment_number, instalments_total=subscription.instalments_total,
            period_start=charge.period_start, period_end=charge.period_end, paid_at=now), source=SOURCE)
        return
    message = result.message or "The payment did not go through."
    failure = billing_cycle.charge_failed(cycle, now, message=message)
    attempt = ChargeAttempt(subscription_id=subscription.id, idempotency_key=key, amount=amount,
                            currency=subscription.currency, succeeded=False, message=message,
                            next_retry_at=failure.next_retry_at, attempted_at=now)
    session.add(attempt)
    session.flush()
    publish_later(session, PaymentFailed(
        **fields, payment_id=f"att_{attempt.id}", kind=kind, amount=Money(amount=amount, currency=subscription.currency),
        instalment_number=charge.instalment_number, attempt=failure.cycle.failures,
        next_retry_at=failure.next_retry_at, failure_message=message, failed_at=now), source=SOURCE)
    if cycle.status != "past_due":
        last_retry = failure.cycle.failed_since + timedelta(days=billing_cycle.DEFAULT_RETRY_DAYS[-1])
        publish_later(session, SubscriptionPastDue(**fields, since=now,
                                                   grace_until=last_retry if failure.next_retry_at else now),
                      source=SOURCE)
    if failure.next_retry_at is None:
        _end(session, subscription, failure.cycle, now, effective_at=now, actor="system", reason="payment failed")
    else:
        store(session, subscription, failure.cycle, now)


def _end(session: Session, subscription: Subscription, cycle: Cycle, now: datetime, *, effective_at: datetime,
         actor: Actor | str, reason: str | None) -> None:
    ended = Cycle(**{**cycle.__dict__, "status": "cancelled", "cancel_at": effective_at})
    store(session, subscription, ended, now)
    publish_later(session, SubscriptionCancelled(**billing_fields(session, subscription), effective_at=effective_at,
                                                 actor=actor, reason=reason, cancelled_at=now), source=SOURCE)


# --- what the seller (or the customer) asks ------------------------------------------------


def cancel_subscription(session: Session, subscription: Subscription, now: datetime, *,
                        when: Literal["now", "period_end", "date"], at: datetime | None = None,
                        actor: Actor, reason: str | None = None) -> None:
    """Cancels now (`SubscriptionCancelled`), or at the period's end or a date
    (`SubscriptionCancellationScheduled`, then `SubscriptionCancelled` when it takes effect).
    Raises BillingError when the state does not allow it."""
    cycle = cycle_of(session, subscription)
    changed = billing_cycle.cancel(cycle, now, when=when, at=at, by_customer=actor == "customer")
    subscription.cancel_reason, subscription.cancel_actor = reason, actor
    if changed.status == "cancelled":
        _end(session, subscription, cycle, now, effective_at=now, actor=actor, reason=reason)
        return
    store(session, subscription, changed, now)
    publish_later(session, SubscriptionCancellationScheduled(
        **billing_fields(session, subscription), effective_at=changed.cancel_at, actor=actor, reason=reason,
        scheduled_at=now), source=SOURCE)


def undo_cancellation(session: Session, subscription: Subscription, now: datetime, *, actor: Actor) -> None:
    store(session, subscription, billing_cycle.undo_cancel(cycle_of(session, subscription)), now)
    subscription.cancel_reason = subscription.cancel_actor = None
    publish_later(session, SubscriptionCancellationUndone(**billing_fields(session, subscription), actor=actor,
                                                          undone_at=now), source=SOURCE)


def pause_subscription(session: Session, subscription: Subscription, now: datetime, *, actor: Actor) -> None:
    store(session, subscription, billing_cycle.pause(cycle_of(session, subscription), now), now)
    publish_later(session, SubscriptionPaused(**billing_fields(session, subscription), actor=actor, paused_at=now),
                  source=SOURCE)


def resume_subscription(session: Session, subscription: Subscription, now: datetime, *, actor: Actor) -> None:
    store(session, subscription, billing_cycle.resume(cycle_of(session, subscription), now), now)
    publish_later(session, SubscriptionResumed(**billing_fields(session, subscription), actor=actor,
                                               resumed_at=now), source=SOURCE)


def update_payment_method(session: Session, subscription: Subscription, result: PaymentResult,
                          now: datetime) -> None:
    """The customer saved a new card: renewals use it, and a past-due charge is tried again now."""
    subscription.payment_method_id = result.payment_method_id
    subscription.customer_ref = result.customer_ref or subscription.customer_ref
    cycle = cycle_of(session, subscription)
    if cycle.status == "past_due":
        cycle = Cycle(**{**cycle.__dict__, "retry_at": now})
    store(session, subscription, cycle, now)


# --- refunds --------------------------------------------------------------------------------


def refundable(purchase: Purchase) -> int:
    return purchase.amount - purchase.refunded


def refund_of_submission(session: Session, submission: str) -> Refund | None:
    """The refund a confirmed refund form (its one-time `submission` token) already made."""
    return session.exec(select(Refund).where(Refund.submission == submission)).first()


def refund_purchase(session: Session, purchase: Purchase, *, amount: int | None, reason: str | None,
                    provider: PaymentProvider, now: datetime, submission: str | None = None) -> Refund:
    """Refunds the purchase in full (no amount) or in part through the provider, and publishes
    `PurchaseRefunded`. Raises BillingError when there is nothing (or not that much) to refund.

    `submission`, the one-time token of the back office's refund form, makes a form posted twice
    refund once: the refund it already made is returned, the provider's idempotency key is the
    token (not the amount refunded so far, which the first refund changed), and the refunds
    table holds it under a unique constraint. Without one (the JSON admin API), the key is the
    purchase's refunded total and the amount, as before."""
    if submission is not None:
        done = refund_of_submission(session, submission)
        if done is not None:
            if done.purchase_id != purchase.id:
                raise BillingError("This refund form belongs to another purchase.")
            return done
    left = refundable(purchase)
    amount = left if amount is None else amount
    if not purchase.provider_payment_id or left <= 0:
        raise BillingError("There is nothing left to refund on this purchase.")
    if not 0 < amount <= left:
        raise BillingError(f"A refund of this purchase may be from 1 to {left} (minor units).")
    key = (f"refund:{purchase.id}:submission:{submission}" if submission is not None
           else f"refund:{purchase.id}:{purchase.refunded}:{amount}")
    result = provider.refund(payment_id=purchase.provider_payment_id, amount=amount, idempotency_key=key)
    if not result.succeeded:
        raise BillingError(result.message or "The payment provider refused the refund.")
    return record_refund(session, purchase, provider=provider.name, provider_refund_id=result.refund_id,
                         amount=amount, actor="seller", reason=reason, now=now, submission=submission)


def record_refund(session: Session, purchase: Purchase, *, provider: str, provider_refund_id: str, amount: int,
                  actor: Actor, reason: str | None, now: datetime, submission: str | None = None) -> Refund:
    """Records a refund the provider made (asked here, or in the provider's own dashboard).
    Safe to repeat: one refund per provider refund id."""
    existing = session.exec(select(Refund).where(Refund.provider_refund_id == provider_refund_id)).first()
    if existing is not None:
        return existing
    amount = min(amount, refundable(purchase))
    refund = Refund(id=f"re_{uuid.uuid4().hex[:16]}", purchase_id=purchase.id, provider=provider,
                    provider_refund_id=provider_refund_id, amount=amount, currency=purchase.currency, reason=reason,
                    actor=actor, refunded_at=now, submission=submission)
    purchase.refunded += amount
    session.add_all([refund, purchase])
    publish_later(session, PurchaseRefunded(
        refund_id=refund.id, purchase_id=purchase.id, customer_id=purchase.customer_id, email=purchase.email,
        amount=Money(amount=amount, currency=purchase.currency),
        total_refunded=Money(amount=purchase.refunded, currency=purchase.currency),
        full=purchase.refunded >= purchase.amount, reason=reason, actor=actor, refunded_at=now), source=SOURCE)
    return refund


# --- what the provider reports: refunds in its dashboard, disputes -------------------------


def purchases_paid_by(session: Session, provider_payment_id: str) -> list[Purchase]:
    """The purchases a provider's payment paid: those of a first payment (an order bump or a cart
    share it), or the subscription's purchase for a renewal."""
    payment = session.exec(select(Payment).where(Payment.provider_payment_id == provider_payment_id)).first()
    if payment is None:
        return []
    if payment.subscription_id:
        return [session.get(Purchase, session.get(Subscription, payment.subscription_id).purchase_id)]
    return list(session.exec(select(Purchase).where(Purchase.payment_id == payment.id)
                             .order_by(Purchase.completed_at, Purchase.id)).all())


def apply_provider_refund(session: Session, refund: ProviderRefund, *, provider: str, now: datetime) -> bool:
    """A refund made at the provider (`charge.refunded`): recorded once, spread over the purchases
    the payment paid. False when the payment is not known yet (the webhook came first)."""
    purchases = purchases_paid_by(session, refund.payment_id)
    if not purchases:
        return False
    known = session.exec(select(Refund).where(
        (Refund.provider_refund_id == refund.refund_id) | Refund.provider_refund_id.startswith(f"{refund.refund_id}#")  # type: ignore[attr-defined]
    )).first()
    if known is not None:
        return True
    left = refund.amount
    for number, purchase in enumerate(purchases):
        share = min(left, refundable(purchase))
        if share <= 0:
            continue
        record_refund(session, purchase, provider=provider, provider_refund_id=refund.refund_id if number == 0
                      else f"{refund.refund_id}#{number}", amount=share, actor="provider",
                      reason="refunded at the payment provider", now=now)
        left -= share
    return True


def apply_provider_dispute(session: Session, dispute: ProviderDispute, *, provider: str, now: datetime) -> bool:
    """A dispute opened or closed at the provider, for each purchase the payment paid. A late
    "opened" never reopens a closed dispute. False when the payment is not known yet."""
    purchases = purchases_paid_by(session, dispute.payment_id)
    if not purchases:
        return False
    for purchase in purchases:
        row = session.exec(select(Dispute).where(Dispute.provider_dispute_id == dispute.dispute_id,
                                                 Dispute.purchase_id == purchase.id)).first()
        if row is not None and (row.status != "open" or dispute.status == "open"):
            continue  # already known in this state or a newer one
        if row is None:
            row = Dispute(id=f"dp_{uuid.uuid4().hex[:16]}", purchase_id=purchase.id,
                          provider_dispute_id=dispute.dispute_id, amount=purchase.amount, currency=purchase.currency,
                          reason=dispute.reason, status=dispute.status, opened_at=now)
        fields = {"dispute_id": row.id, "purchase_id": purchase.id, "customer_id": purchase.customer_id,
                  "email": purchase.email, "amount": Money(amount=purchase.amount, currency=purchase.currency),
                  "provider": provider}
        if dispute.status == "open":
            event = DisputeOpened(**fields, reason=dispute.reason, opened_at=now)
        else:
            row.status, row.closed_at = dispute.status, now
            event = (DisputeWon if dispute.status == "won" else DisputeLost)(**fields, closed_at=now)
        session.add(row)
        publish_later(session, event, source=SOURCE)
    return True


def apply_provider_event(session: Session, event: WebhookEvent, *, provider: str, now: datetime) -> bool:
    """Refunds and disputes of a provider event; False when it waits for its payment."""
    applied = all([apply_provider_refund(session, refund, provider=provider, now=now) for refund in event.refunds])
    if event.dispute is not None:
        applied = apply_provider_dispute(session, event.dispute, provider=provider, now=now) and applied
    return applied


def replay_waiting_events(session: Session, provider_payment_id: str, *, provider: str, now: datetime) -> None:
    """Runs inside the transaction that records a payment, after the payment is added: the provider
    events that came before it. The payment id is held first, so that a webhook making an event wait
    either commits it before this looks, or finds this payment once it is committed."""
    hold_provider_payment(session, provider_payment_id)
    waiting = session.exec(select(ProviderEvent).where(ProviderEvent.payment_id == provider_payment_id,
                                                       ProviderEvent.handled.is_(False))).all()  # type: ignore[attr-defined]
    for row in waiting:
        if apply_provider_event(session, event_from_payload(row.payload or {}), provider=provider, now=now):
            row.handled = True
            session.add(row)


def event_from_payload(payload: dict) -> WebhookEvent:
    dispute = payload.get("dispute")
    return WebhookEvent(payload["event_id"], payload["type"],
                        refunds=tuple(ProviderRefund(**refund) for refund in payload.get("refunds", ())),
                        dispute=ProviderDispute(**dispute) if dispute else None)


# --- the lifecycle simulator (the sandbox) --------------------------------------------------


def is_simulated(session: Session, customer_id: str) -> bool:
    return session.get(SimulatedClock, customer_id) is not None


def simulated_clock(session: Session, customer_id: str) -> SimulatedClock:
    clock = session.get(SimulatedClock, customer_id)
    if clock is None:
        clock = SimulatedClock(customer_id=customer_id)
        session.add(clock)
    return clock
