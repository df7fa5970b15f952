"""Checkout's HTTP side: the checkout pages, provider webhooks and the seller's admin API."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import stripe
from anyio import to_thread
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.checkout import handlers
from postsale.checkout.adapters.payments import SandboxProvider, StripeGateway
from postsale.checkout.adapters.tables import CheckoutSession, Offer, Purchase
from postsale.checkout.domain.setup_tokens import setup_token
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.db import SessionDep
from postsale.runtime.web import normalize_email, require_admin, templates_for

log = logging.getLogger(__name__)
templates = templates_for(Path(__file__).parents[1] / "templates")
templates.env.filters["money"] = lambda amount, currency: f"{amount / 100:,.2f} {currency}"
router = APIRouter()
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])
CustomerDep = Annotated[CustomerSession | None, Depends(current_customer)]
STRIPE_CARD_FORM_MISSING = ("This store takes cards through Stripe, whose card form is not on this page yet, "
                            "so nothing can be charged here.")


class Price(BaseModel):
    amount: int = Field(gt=0, description="Minor units, e.g. 4900 for 49.00.")
    currency: str = Field(pattern="^[A-Za-z]{3}$")


class NewOffer(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price: Price
    product_ids: list[str] = Field(min_length=1)
    send_confirmation_email: bool = True


class OfferOut(BaseModel):
    id: str
    name: str
    price: Price
    product_ids: list[str]
    send_confirmation_email: bool
    checkout_url: str


def _offer_out(request: Request, offer: Offer) -> OfferOut:
    return OfferOut(id=offer.id, name=offer.name, price=Price(amount=offer.price_amount, currency=offer.currency),
                    product_ids=offer.product_ids, send_confirmation_email=offer.send_confirmation_email,
                    checkout_url=f"{request.app.state.urls.checkout_url}/offers/{offer.id}")


@admin.post("/offers", status_code=201, response_model=OfferOut)
def create_offer(body: NewOffer, request: Request, session: SessionDep) -> OfferOut:
    try:
        offer = handlers.create_offer(session, name=body.name, amount=body.price.amount, currency=body.price.currency,
                                      product_ids=body.product_ids, send_confirmation_email=body.send_confirmation_email)
    except handlers.CheckoutError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    session.commit()
    return _offer_out(request, offer)


@admin.get("/offers/{offer_id}", response_model=OfferOut)
def get_offer(offer_id: str, request: Request, session: SessionDep) -> OfferOut:
    offer = session.get(Offer, offer_id)
    if offer is None:
        raise HTTPException(status_code=404, detail=f"no offer {offer_id}")
    return _offer_out(request, offer)


class PurchaseOut(BaseModel):
    id: str
    customer_id: str
    email: str
    offer_id: str
    price: Price
    provider: str
    provider_payment_id: str
    completed_at: datetime


@admin.get("/purchases", response_model=list[PurchaseOut])
def list_purchases(session: SessionDep, email: str | None = None, offer_id: str | None = None) -> list[PurchaseOut]:
    query = select(Purchase).order_by(Purchase.completed_at)
    if email:
        query = query.where(Purchase.email == (normalize_email(email) or email))
    if offer_id:
        query = query.where(Purchase.offer_id == offer_id)
    return [
        PurchaseOut(id=p.id, customer_id=p.customer_id, email=p.email, offer_id=p.offer_id,
                    price=Price(amount=p.amount, currency=p.currency), provider=p.provider,
                    provider_payment_id=p.provider_payment_id, completed_at=p.completed_at)
        for p in session.exec(query).all()
    ]


def _offer_or_404(session: Session, offer_id: str) -> Offer:
    offer = session.get(Offer, offer_id)
    if offer is None:
        raise HTTPException(status_code=404, detail="This offer does not exist.")
    return offer


def _checkout_or_404(session: Session, checkout_id: str) -> CheckoutSession:
    checkout = session.get(CheckoutSession, checkout_id)
    if checkout is None:
        raise HTTPException(status_code=404, detail="This checkout does not exist or has expired.")
    return checkout


@router.get("/offers/{offer_id}", response_class=HTMLResponse)
def offer_page(offer_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    offer = _offer_or_404(session, offer_id)
    return templates.TemplateResponse(request, "email.html", {"offer": offer, "email": customer.email if customer else ""})


@router.post("/offers/{offer_id}/checkout", response_class=HTMLResponse)
def start_checkout(offer_id: str, request: Request, session: SessionDep, email: Annotated[str, Form()] = ""):
    """Email first: opens a purchase attempt, then payment (after login, for a returning customer)."""
    offer = _offer_or_404(session, offer_id)
    normalized = normalize_email(email)
    if normalized is None:
        return templates.TemplateResponse(request, "email.html",
                                          {"offer": offer, "email": email, "error": "Enter a valid email address."},
                                          status_code=422)
    checkout = handlers.start_checkout(session, offer=offer, email=normalized)
    session.commit()
    return RedirectResponse(f"/checkout/{checkout.id}", status_code=303)


def _login_redirect(request: Request, checkout: CheckoutSession) -> RedirectResponse:
    urls = request.app.state.urls
    back = f"{urls.checkout_url}/checkout/{checkout.id}"
    return RedirectResponse(urls.login_url(next_url=back) + "&" + urlencode({"email": checkout.email}), status_code=303)


def _needs_login(session: Session, checkout: CheckoutSession, customer: CustomerSession | None) -> bool:
    logged_in_as_buyer = customer is not None and customer.email == checkout.email
    return not logged_in_as_buyer and handlers.customer_has_account(session, checkout.email)


@router.get("/checkout/{checkout_id}", response_class=HTMLResponse)
def payment_page(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    checkout = _checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        return _after_purchase(request, session, checkout)
    if _needs_login(session, checkout, customer):
        return _login_redirect(request, checkout)
    return _payment_form(request, session, checkout)


def _payment_form(request: Request, session: Session, checkout: CheckoutSession, error: str | None = None,
                  status_code: int = 200) -> HTMLResponse:
    offer = session.get(Offer, checkout.offer_id)
    sandbox = request.app.state.sandbox is not None
    return templates.TemplateResponse(
        request, "payment.html",
        {"offer": offer, "checkout": checkout, "error": error or (None if sandbox else STRIPE_CARD_FORM_MISSING),
         "sandbox": sandbox,
         "test_card": SandboxProvider.SUCCEEDS, "declined_card": "4000000000000002"},
        status_code=status_code,
    )


@router.post("/checkout/{checkout_id}/pay", response_class=HTMLResponse)
def pay(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep,
        card_number: Annotated[str, Form()] = ""):
    """Charges the sandbox provider; a double click or a retried request never charges twice."""
    checkout = _checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        return _after_purchase(request, session, checkout)
    if _needs_login(session, checkout, customer):
        return _login_redirect(request, checkout)
    provider: SandboxProvider | None = request.app.state.sandbox
    if provider is None:
        return _payment_form(request, session, checkout, status_code=409)
    offer = session.get(Offer, checkout.offer_id)
    result = provider.charge(amount=offer.price_amount, currency=offer.currency, card_number=card_number,
                             idempotency_key=checkout.id)
    if not result.succeeded:
        checkout.last_error = result.decline_message
        session.add(checkout)
        session.commit()
        return _payment_form(request, session, checkout, error=result.decline_message, status_code=402)
    handlers.complete_purchase(session, checkout, provider=provider.name, provider_payment_id=result.payment_id,
                               secret_key=request.app.state.secret_key)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request of the same attempt completed it first.
        session.rollback()
    session.refresh(checkout)
    return _after_purchase(request, session, checkout)


def _after_purchase(request: Request, session: Session, checkout: CheckoutSession) -> RedirectResponse:
    """Where a paid buyer goes next: account creation for a new customer, else the library."""
    urls = request.app.state.urls
    purchase = session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id)).one()
    if handlers.customer_has_account(session, checkout.email):
        return RedirectResponse(urls.library_url, status_code=303)
    token = setup_token(request.app.state.secret_key, checkout.id)
    query = urlencode({"purchase": purchase.id, "token": token})
    return RedirectResponse(f"{urls.accounts_url}/setup?{query}", status_code=303)


@router.get("/checkout/{checkout_id}/complete", response_class=HTMLResponse)
def after_provider_payment(checkout_id: str, request: Request, session: SessionDep):
    """Where the payment provider returns the buyer: on once the payment is confirmed."""
    checkout = _checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        return _after_purchase(request, session, checkout)
    return templates.TemplateResponse(request, "processing.html", {"checkout": checkout})


@router.post("/checkout/{checkout_id}/stripe/payment-intent", tags=["stripe"])
def create_payment_intent(checkout_id: str, request: Request, session: SessionDep) -> dict[str, str]:
    """Starts a Stripe payment for the attempt; Stripe.js confirms it with the client secret."""
    stripe_gateway: StripeGateway | None = request.app.state.stripe
    if stripe_gateway is None:
        raise HTTPException(status_code=409, detail="Stripe is not configured for this store.")
    checkout = _checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        raise HTTPException(status_code=409, detail="This checkout is already paid.")
    offer = session.get(Offer, checkout.offer_id)
    try:
        intent = stripe_gateway.create_payment_intent(amount=offer.price_amount, currency=offer.currency,
                                                      checkout_session_id=checkout.id)
    except stripe.StripeError as exc:
        log.warning("Stripe refused a payment intent for %s: %s", checkout.id, exc)
        raise HTTPException(status_code=502, detail=f"The payment provider refused: {exc.user_message or exc}") from exc
    checkout.provider = "stripe"
    checkout.provider_payment_id = intent.id
    session.add(checkout)
    session.commit()
    return {"payment_intent_id": intent.id, "client_secret": intent.client_secret or ""}


@router.post("/webhooks/stripe", tags=["stripe"])
async def stripe_webhook(request: Request) -> dict[str, str]:
    """Verified on the raw body, deduplicated on Stripe's event id."""
    stripe_gateway: StripeGateway | None = request.app.state.stripe
    if stripe_gateway is None:
        raise HTTPException(status_code=404, detail="Stripe is not configured for this store.")
    payload = await request.body()
    try:
        event = stripe_gateway.verify_webhook(payload, request.headers.get("stripe-signature"))
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise HTTPException(status_code=400, detail=f"invalid webhook: {exc}") from exc
    return await to_thread.run_sync(_handle_stripe_event, request, event)


def _handle_stripe_event(request: Request, event: stripe.Event) -> dict[str, str]:
    with Session(request.app.state.engine) as session:
        if not handlers.record_provider_event(session, source="stripe", external_id=event.id, type=event.type):
            return {"status": "duplicate"}
        if event.type == "payment_intent.succeeded":
            intent = event.data.object.to_dict()
            metadata = intent.get("metadata") or {}
            checkout = session.get(CheckoutSession, metadata.get("postsale_checkout_session", ""))
            if checkout is None or not intent.get("id"):
                log.warning("Stripe payment %s names no known checkout session", intent.get("id"))
            else:
                handlers.complete_purchase(session, checkout, provider="stripe", provider_payment_id=intent["id"],
                                           secret_key=request.app.state.secret_key)
        try:
            session.commit()
        except IntegrityError:
            # The same event, delivered twice at once: the other delivery recorded it.
            session.rollback()
            return {"status": "duplicate"}
    return {"status": "accepted"}
