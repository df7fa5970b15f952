"""The customer's billing page: subscriptions and payment plans, cancel and undo, a new card, and
a receipt per payment. Each part is switchable per offer by the seller."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import Session, select

from postsale.checkout import billing, card_expiry
from postsale.checkout.adapters.payments.port import PaymentError, PaymentResult
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import (BillingJob, CardExpiryCheck, Offer, Payment, Purchase, Refund,
                                               Subscription)
from postsale.checkout.domain.billing import cadence
from postsale.checkout.domain.billing_cycle import BillingError, SelfService
from postsale.checkout.entrypoints.buyer import MAX_FIELD, CustomerDep, templates
from postsale.runtime.auth import CustomerSession
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep

billing_pages = APIRouter(prefix="/billing", tags=["billing page"])
MAX_REASON = 500
CSRF = [Depends(require_csrf)]  # every form here changes the customer's billing


def _login(request: Request) -> RedirectResponse:
    urls = request.app.state.urls
    return RedirectResponse(urls.login_url(next_url=f"{urls.checkout_url}/billing"), status_code=303)


def _self_service(session: Session, subscription: Subscription) -> SelfService:
    return SelfService(**session.get(Offer, subscription.offer_id).self_service)


def _own_subscription(session: Session, customer: CustomerSession, subscription_id: str) -> Subscription:
    subscription = session.get(Subscription, subscription_id[:64], with_for_update=True)
    if subscription is None or subscription.customer_id != customer.customer_id:
        raise HTTPException(status_code=404, detail="This subscription is not yours, or does not exist.")
    return subscription


def _page(request: Request, session: Session, customer: CustomerSession, *, notice: str | None = None,
          error: str | None = None, status_code: int = 200) -> HTMLResponse:
    subscriptions = session.exec(select(Subscription).where(Subscription.customer_id == customer.customer_id)
                                 .order_by(Subscription.created_at)).all()
    rows = [{"subscription": s, "offer": session.get(Offer, s.offer_id), "cycle": billing.cycle_of(session, s),
             "allowed": _self_service(session, s), "cadence": cadence(s.interval, s.interval_count)}
            for s in subscriptions]
    purchases = session.exec(select(Purchase).where(Purchase.customer_id == customer.customer_id)).all()
    offers = {p.offer_id: session.get(Offer, p.offer_id) for p in purchases}
    hidden = {p.checkout_session_id for p in purchases if not SelfService(**offers[p.offer_id].self_service).receipts}
    payments = [p for p in session.exec(select(Payment).where(Payment.checkout_session_id.in_(  # type: ignore[attr-defined]
        [p.checkout_session_id for p in purchases])).order_by(Payment.paid_at.desc())).all()  # type: ignore[attr-defined]
        if p.checkout_session_id not in hidden and p.amount > 0]
    sandbox = isinstance(request.app.state.payments, SandboxProvider)
    return templates.TemplateResponse(request, "billing.html", {
        "customer": customer, "rows": rows, "payments": payments, "notice": notice, "error": error,
        "sandbox": sandbox, "stripe_publishable_key": request.app.state.stripe_publishable_key,
        "library_url": request.app.state.urls.library_url}, status_code=status_code)


@billing_pages.get("", response_class=HTMLResponse)
def billing_page(request: Request, session: SessionDep, customer: CustomerDep):
    if customer is None:
        return _login(request)
    return _page(request, session, customer)


def _act(request: Request, session: Session, customer: CustomerSession | None, subscription_id: str, allowed,
         change, notice: str) -> Response:
    if customer is None:
        return _login(request)
    subscription = _own_subscription(session, customer, subscription_id)
    if not allowed(_self_service(session, subscription)):
        return _page(request, session, customer, error="The seller handles this for you: please contact them.",
                     status_code=403)
    try:
        change(subscription, billing.customer_now(session, subscription.customer_id))
    except BillingError as exc:
        session.rollback()
        return _page(request, session, customer, error=str(exc), status_code=409)
    session.commit()
    return _page(request, session, customer, notice=notice)


@billing_pages.post("/subscriptions/{subscription_id}/cancel", response_class=HTMLResponse, dependencies=CSRF)
def cancel(subscription_id: str, request: Request, session: SessionDep, customer: CustomerDep,
           reason: Annotated[str, Form()] = ""):
    """The customer cancels at the end of the paid period, optionally saying why (the seller sees it)."""
    return _act(request, session, customer, subscription_id, lambda allowed: allowed.cancel,
                lambda subscription, now: billing.cancel_subscription(
                    session, subscription, now, when="period_end", actor="customer",
                    reason=reason.strip()[:MAX_REASON] or None),
                "Cancelled: you keep access to the end of the paid period.")


@billing_pages.post("/subscriptions/{subscription_id}/undo-cancel", response_class=HTMLResponse, dependencies=CSRF)
def undo_cancel(subscription_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    return _act(request, session, customer, subscription_id, lambda allowed: allowed.cancel,
                lambda subscription, now: billing.undo_cancellation(session, subscription, now, actor="customer"),
                "Your subscription goes on.")


@billing_pages.post("/subscriptions/{subscription_id}/card", response_class=HTMLResponse, dependencies=CSRF)
async def new_card(subscription_id: str, request: Request, customer: CustomerDep):
    """Saves a new card for the renewals (nothing is charged; a past-due payment is tried again at
    once). The sandbox takes a test card number; Stripe's Payment Element confirms a setup."""
    data = await request.form()
    card = str(data.get("card_number", ""))[:MAX_FIELD]
    expiry = str(data.get("card_expiry", ""))[:MAX_FIELD]
    return await to_thread.run_sync(_new_card, request, customer, subscription_id, card, expiry)


def _new_card(request: Request, customer: CustomerSession | None, subscription_id: str, card: str,
              expiry: str) -> Response:
    with Session(request.app.state.engine) as session:
        if customer is None:
            return _login(request)
        subscription = _own_subscription(session, customer, subscription_id)
        if not _self_service(session, subscription).update_card:
            return _page(request, session, customer, error="The seller handles cards for you: please contact them.",
                         status_code=403)
        provider = request.app.state.payments
        attempt = f"{subscription.id}:card:{subscription.payment_method_id}"
        try:
            result = provider.start_payment(attempt_id=subscription.purchase_id, amount=0,
                                            currency=subscription.currency, email=customer.email,
                                            idempotency_key=f"{attempt}:{card[-4:]}:{expiry.strip()[:7]}",
                                            details={"card_number": card, "card_expiry": expiry})
        except PaymentError as exc:
            return _page(request, session, customer, error=str(exc), status_code=502)
        if result.client_secret and "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"status": "requires_action", "client_secret": result.client_secret, "mode": "setup",
                                 "payment_id": result.payment_id})
        return _card_saved(request, session, customer, subscription, result)


@billing_pages.post("/subscriptions/{subscription_id}/card/complete", response_class=HTMLResponse, dependencies=CSRF)
def card_confirmed(subscription_id: str, request: Request, session: SessionDep, customer: CustomerDep,
                   payment_id: Annotated[str, Form()] = ""):
    """Where the page goes on once Stripe.js confirmed the new card."""
    if customer is None:
        return _login(request)
    subscription = _own_subscription(session, customer, subscription_id)
    result = request.app.state.payments.payment_result(payment_id[:64])
    if result.attempt_id != subscription.purchase_id:  # a setup made for another subscription
        return _page(request, session, customer, error="This card was not set up for this subscription.",
                     status_code=409)
    return _card_saved(request, session, customer, subscription, result)


@billing_pages.get("/subscriptions/{subscription_id}/card", response_class=HTMLResponse)
def card_page(subscription_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    if customer is None:
        return _login(request)
    subscription = _own_subscription(session, customer, subscription_id)
    return templates.TemplateResponse(request, "card.html", {
        "subscription": subscription, "offer": session.get(Offer, subscription.offer_id),
        "sandbox": isinstance(request.app.state.payments, SandboxProvider),
        "stripe_publishable_key": request.app.state.stripe_publishable_key})


def _card_saved(request: Request, session: Session, customer: CustomerSession, subscription: Subscription,
                result: PaymentResult) -> HTMLResponse:
    if not result.succeeded or not result.payment_method_id:
        return _page(request, session, customer, error=result.message or "The card could not be saved.",
                     status_code=402)
    now = billing.customer_now(session, subscription.customer_id)
    billing.update_payment_method(session, subscription, result, now)
    card_expiry.watch_card(session, subscription, now)
    session.commit()
    if billing.is_simulated(session, subscription.customer_id):
        # A test customer's time moves only with the simulator: the retry and the card check due now run now.
        request.app.state.billing_scheduler.run_due(until=now, where=BillingJob.customer_id == subscription.customer_id)
        request.app.state.card_expiry_scheduler.run_due(
            until=now, where=CardExpiryCheck.customer_id == subscription.customer_id)
        session.expire_all()
    return _page(request, session, customer, notice="Your new card is saved.")


@billing_pages.get("/receipts/{payment_id}", response_class=HTMLResponse)
def receipt(payment_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    """A printable receipt of one payment, with the refunds of what it paid for once (a subscription's
    refunds are not tied to one of its payments: its receipts show each payment as paid)."""
    if customer is None:
        return _login(request)
    payment = session.get(Payment, payment_id[:64])
    purchases = session.exec(select(Purchase).where(Purchase.checkout_session_id == payment.checkout_session_id)
                             ).all() if payment else []
    if payment is None or not purchases or purchases[0].customer_id != customer.customer_id:
        raise HTTPException(status_code=404, detail="This receipt is not yours, or does not exist.")
    lines = [(p, session.get(Offer, p.offer_id)) for p in purchases
             if p.payment_id == payment.id or payment.subscription_id and p.subscription_id == payment.subscription_id]
    refunds = [] if payment.subscription_id else session.exec(
        select(Refund).where(Refund.purchase_id.in_([p.id for p, _offer in lines]))  # type: ignore[attr-defined]
        .order_by(Refund.refunded_at)).all()
    return templates.TemplateResponse(request, "receipt.html", {
        "payment": payment, "lines": lines, "customer": customer, "refunds": refunds,
        "net": payment.amount - sum(r.amount for r in refunds)})
