"""The buyer's pages up to the first payment: offer and cart pages, the payment page, paying.

Every provider call happens between database transactions, keyed so that a double click, a
reload, the back button or a second tab never charges twice.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.checkout import handlers, returns
from postsale.checkout.adapters.payments.port import PaymentError, PaymentResult
from postsale.checkout.adapters.payments.sandbox import SUCCEEDS, SandboxProvider
from postsale.checkout.adapters.tables import Cart, CheckoutSession, Offer
from postsale.checkout.domain.billing import chosen_amount_problem
from postsale.checkout.domain.money import parse_major
from postsale.checkout.domain.setup_tokens import setup_token
from postsale.checkout.entrypoints.buyer import (MAX_FIELD, CustomerDep, after_purchase, checkout_or_404,
                                                 logged_in_as_buyer, page, provider_of, wants_json)
from postsale.checkout.entrypoints.returned_payments import give_back
from postsale.runtime.auth import CustomerSession
from postsale.runtime.db import SessionDep
from postsale.runtime.passwords import password_problem
from postsale.runtime.web import normalize_email

log = logging.getLogger(__name__)
router = APIRouter(tags=["pages"])
MAX_NAME = 100
MAX_EMAIL = 254
STRIPE_TAKES_CARDS = ("This store takes cards through Stripe's card form only; card numbers typed here, such as "
                      "the sandbox's test cards, are never charged.")


class PaymentRefused(Exception):
    """The pay form cannot go on; the page says why."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message, self.status_code = message, status_code



def _offer_or_404(session: Session, offer_id: str) -> Offer:
    offer = session.get(Offer, offer_id[:64])
    if offer is None:
        raise HTTPException(status_code=404, detail="This offer does not exist.")
    return offer



# --- email first ----------------------------------------------------------------------------


def _email_page(request: Request, session: Session, *, offers: list[Offer], action: str, email: str,
                error: str | None = None, status_code: int = 200) -> HTMLResponse:
    title = offers[0].name if len(offers) == 1 else "Your order"
    return page(request, "email.html", {
        "title": title, "offers": [(o, handlers.offer_terms(o).describe()) for o in offers],
        "action": action, "email": email, "error": error}, status_code)


def _prefilled(customer: CustomerSession | None, email: str) -> str:
    """The logged-in customer's email, else the one in the link (a recovery email's), else none."""
    return customer.email if customer else (normalize_email(email[:MAX_EMAIL]) or "")


@router.get("/offers/{offer_id}", response_class=HTMLResponse)
def offer_page(offer_id: str, request: Request, session: SessionDep, customer: CustomerDep, email: str = ""):
    """The offer's checkout page; `?email=` fills the email in (the link of a recovery email)."""
    offer = _offer_or_404(session, offer_id)
    return _email_page(request, session, offers=[offer], action=f"/offers/{offer.id}/checkout",
                       email=_prefilled(customer, email))


@router.get("/carts/{cart_id}", response_class=HTMLResponse)
def cart_page(cart_id: str, request: Request, session: SessionDep, customer: CustomerDep, email: str = ""):
    cart = _cart_or_404(session, cart_id)
    return _email_page(request, session, offers=_cart_offers(session, cart), action=f"/carts/{cart.id}/checkout",
                       email=_prefilled(customer, email))


def _cart_or_404(session: Session, cart_id: str) -> Cart:
    cart = session.get(Cart, cart_id[:64])
    if cart is None:
        raise HTTPException(status_code=404, detail="This cart does not exist.")
    return cart


def _cart_offers(session: Session, cart: Cart) -> list[Offer]:
    return [session.get(Offer, offer_id) for offer_id in cart.offer_ids]


def _start(request: Request, session: Session, *, offers: list[Offer], action: str, email: str,
           cart: Cart | None = None):
    normalized = normalize_email(email[:MAX_FIELD])
    if normalized is None:
        return _email_page(request, session, offers=offers, action=action, email=email[:254],
                           error="Enter a valid email address.", status_code=422)
    checkout_id = handlers.start_checkout(session, offer=offers[0], email=normalized, cart=cart).id
    session.commit()
    return RedirectResponse(f"/checkout/{checkout_id}", status_code=303)


@router.post("/offers/{offer_id}/checkout", response_class=HTMLResponse)
def start_checkout(offer_id: str, request: Request, session: SessionDep, email: Annotated[str, Form()] = ""):
    """Email first: opens a purchase attempt, then payment (after login, for a returning customer)."""
    offer = _offer_or_404(session, offer_id)
    return _start(request, session, offers=[offer], action=f"/offers/{offer.id}/checkout", email=email)


@router.post("/carts/{cart_id}/checkout", response_class=HTMLResponse)
def start_cart_checkout(cart_id: str, request: Request, session: SessionDep, email: Annotated[str, Form()] = ""):
    cart = _cart_or_404(session, cart_id)
    return _start(request, session, offers=_cart_offers(session, cart), action=f"/carts/{cart.id}/checkout",
                  email=email, cart=cart)


def _login_redirect(request: Request, checkout: CheckoutSession) -> RedirectResponse:
    urls = request.app.state.urls
    back = f"{urls.checkout_url}/checkout/{checkout.id}"
    return RedirectResponse(urls.login_url(next_url=back) + "&" + urlencode({"email": checkout.email}), status_code=303)



def _needs_login(session: Session, checkout: CheckoutSession, customer: CustomerSession | None) -> bool:
    return not logged_in_as_buyer(checkout, customer) and handlers.customer_has_account(session, checkout.email)


# --- the payment page -----------------------------------------------------------------------


def _already_owned(session: Session, checkout: CheckoutSession, customer: CustomerSession | None) -> bool:
    """A logged-in customer who owns everything a one-time purchase would grant is told so first."""
    if not logged_in_as_buyer(checkout, customer):
        return False
    offers = [offer for offer, _ in handlers.checkout_offers(session, checkout, with_bump=False)]
    if any(offer.billing_type in ("subscription", "payment_plan") for offer in offers):
        return False
    wanted = {p for offer in offers for p in offer.product_ids}
    return wanted <= handlers.owned_product_ids(session, checkout.email)


def _payment_form(request: Request, session: Session, checkout: CheckoutSession, customer: CustomerSession | None,
                  *, error: str | None = None, notice: str | None = None, status_code: int = 200,
                  form: dict | None = None) -> HTMLResponse:
    try:
        quote = handlers.quote(session, checkout)
    except handlers.CheckoutError as exc:  # the coupon stopped applying since it was entered
        checkout.coupon_code = None
        session.add(checkout)
        session.commit()
        quote, error = handlers.quote(session, checkout), str(exc)
    primary = session.get(Offer, checkout.offer_id)
    bump = handlers.order_bump_of(session, checkout)
    bump_quote = None
    if bump is not None:
        with_bump = handlers.checkout_offers(session, checkout, with_bump=True)
        without = handlers.checkout_offers(session, checkout, with_bump=False)
        bump_quote = {"with": _total(session, checkout, with_bump), "without": _total(session, checkout, without)}
    settings = handlers.post_purchase_settings(session, checkout)
    provider = provider_of(request)
    return page(request, "payment.html", {
        "checkout": checkout, "primary": primary, "quote": quote, "bump": bump, "bump_quote": bump_quote,
        "terms": handlers.offer_terms(primary),
        "ask_password": settings.asks_password_at_checkout and not checkout.bought_before
        and not handlers.customer_has_account(session, checkout.email),
        "already_owned": _already_owned(session, checkout, customer),
        "library_url": request.app.state.urls.library_url,
        "sandbox": isinstance(provider, SandboxProvider), "test_card": SUCCEEDS,
        "stripe_publishable_key": request.app.state.stripe_publishable_key,
        "error": error, "notice": notice, "form": form or {},
    }, status_code)


def _total(session: Session, checkout: CheckoutSession, items) -> int:
    original = checkout.order_bump
    checkout.order_bump = any(is_bump for _, is_bump in items)
    try:
        return handlers.quote(session, checkout).total
    except handlers.CheckoutError:
        return 0
    finally:
        checkout.order_bump = original


@router.get("/checkout/{checkout_id}", response_class=HTMLResponse)
def payment_page(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    checkout = checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        return after_purchase(request, session, checkout, customer)
    if _needs_login(session, checkout, customer):
        return _login_redirect(request, checkout)
    return _payment_form(request, session, checkout, customer)


@router.post("/checkout/{checkout_id}/coupon", response_class=HTMLResponse)
def apply_coupon(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep,
                 code: Annotated[str, Form()] = ""):
    """The buyer enters a code and sees the new price before paying."""
    checkout = checkout_or_404(session, checkout_id)
    if checkout.status == "paid":
        return after_purchase(request, session, checkout, customer)
    try:
        handlers.apply_coupon(session, checkout, code[:MAX_FIELD])
    except handlers.CheckoutError as exc:
        session.rollback()
        return _payment_form(request, session, checkout, customer, error=str(exc), status_code=422,
                             form={"code": code[:40]})
    session.commit()
    notice = f"The code {checkout.coupon_code} is applied." if checkout.coupon_code else "The code is removed."
    return _payment_form(request, session, checkout, customer, notice=notice)


def _read_choices(session: Session, checkout: CheckoutSession, form: dict[str, str]) -> None:
    """The order bump and the pay-what-you-want amount from the pay form, checked."""
    checkout.order_bump = form.get("order_bump") in ("on", "true", "1")
    primary = session.get(Offer, checkout.offer_id)
    if primary.billing_type == "pay_what_you_want" and not checkout.cart_id:
        terms = handlers.offer_terms(primary)
        chosen = parse_major(form.get("amount", ""), primary.currency)
        problem = chosen_amount_problem(terms, chosen)
        if problem:
            raise PaymentRefused(problem)
        checkout.chosen_amount = chosen


def _password_fields(form: dict[str, str]) -> dict[str, str]:
    first, last = form.get("first_name", "").strip(), form.get("last_name", "").strip()
    if not first or not last:
        raise PaymentRefused("Enter your first and last name.")
    if len(first) > MAX_NAME or len(last) > MAX_NAME:
        raise PaymentRefused(f"A name may be at most {MAX_NAME} characters.")
    problem = password_problem(form.get("password", ""), form.get("password_repeat", ""))
    if problem:
        raise PaymentRefused(problem)
    return {"first_name": first, "last_name": last, "password": form["password"],
            "password_repeat": form["password_repeat"]}


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {name: str(value)[:MAX_FIELD] for name, value in list(data.items())[:30] if isinstance(value, str)}


@router.post("/checkout/{checkout_id}/pay", response_class=HTMLResponse)
async def pay(checkout_id: str, request: Request, customer: CustomerDep):
    """Charges the first payment, or starts it for the browser to confirm (Stripe.js, 3-D Secure).

    Answers JSON when asked to (the Stripe payment page's script does), HTML otherwise.
    """
    form = await _form(request)
    return await to_thread.run_sync(_pay, request, checkout_id, customer, form)


def _pay(request: Request, checkout_id: str, customer: CustomerSession | None, form: dict[str, str]) -> Response:
    # What a commit wrote stays loaded rather than read back at the next use: the payment holds and
    # re-reads the attempt itself (`hold_attempt`), and the offers and products do not change under it.
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        checkout = checkout_or_404(session, checkout_id)
        if checkout.status == "paid":
            return after_purchase(request, session, checkout, customer)
        if _needs_login(session, checkout, customer):
            return _login_redirect(request, checkout)
        try:
            if form.get("card_number") and not isinstance(provider_of(request), SandboxProvider):
                raise PaymentRefused(STRIPE_TAKES_CARDS, 409)
            if _already_owned(session, checkout, customer):
                raise PaymentRefused("You already own everything in this offer.", 409)
            _read_choices(session, checkout, form)
            settings = handlers.post_purchase_settings(session, checkout)
            password = None
            if settings.asks_password_at_checkout and not checkout.bought_before:
                password = _password_fields(form)
            quote = handlers.quote(session, checkout)
            checkout.amount_due = quote.total
            handlers.reserve_coupon(session, checkout)
            session.add(checkout)
            session.commit()
        except (PaymentRefused, handlers.CheckoutError) as exc:
            session.rollback()
            message = exc.message if isinstance(exc, PaymentRefused) else str(exc)
            status = exc.status_code if isinstance(exc, PaymentRefused) else 422
            return _refused(request, session, checkout, customer, message, status, form)
        if quote.needs_payment:
            try:
                result = provider_of(request).start_payment(
                    attempt_id=checkout.id, amount=quote.total, currency=quote.currency, email=checkout.email,
                    idempotency_key=handlers.payment_idempotency_key(checkout, quote.total, quote.currency),
                    details=form,
                )
            except PaymentError as exc:
                return _refused(request, session, checkout, customer, str(exc), 502, form)
        else:
            result = PaymentResult("succeeded")  # a free offer: nothing to charge
        return _on_payment_result(request, session, checkout, customer, result, form, password)


def _refused(request: Request, session: Session, checkout: CheckoutSession, customer, message: str, status: int,
             form: dict[str, str]) -> Response:
    if wants_json(request):
        return JSONResponse({"status": "declined" if status == 402 else "invalid", "message": message},
                            status_code=status)
    kept = {k: v for k, v in form.items() if k in ("amount", "first_name", "last_name", "order_bump")}
    return _payment_form(request, session, checkout, customer, error=message, status_code=status, form=kept)


def _on_payment_result(request: Request, session: Session, checkout: CheckoutSession, customer,
                       result: PaymentResult, form: dict[str, str], password: dict[str, str] | None) -> Response:
    if result.status == "declined":
        handlers.record_decline(session, checkout, result.message)
        session.commit()
        return _refused(request, session, checkout, customer, result.message or "Your card was declined.", 402, form)
    if result.status in ("requires_action", "processing"):
        checkout.provider = provider_of(request).name
        checkout.provider_payment_id = result.payment_id
        session.add(checkout)
        session.commit()
        if result.client_secret:
            if not wants_json(request):
                return _refused(request, session, checkout, customer,
                                "The card form needs JavaScript: enable it to pay.", 409, form)
            return JSONResponse({"status": "requires_action", "client_secret": result.client_secret,
                                 "payment_id": result.payment_id,
                                 "mode": "payment" if (result.amount or 0) > 0 else "setup"})
        if result.action_url:
            return RedirectResponse(result.action_url, status_code=303)
        return page(request, "processing.html", {"checkout": checkout})
    try:
        handlers.complete_first_payment(session, checkout, provider=provider_of(request).name, result=result,
                                        secret_key=request.app.state.secret_key, urls=request.app.state.urls)
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request of the same attempt completed it first
    except handlers.PaymentMismatch as exc:
        session.rollback()
        return _give_back(request, checkout, result, str(exc))
    except handlers.CheckoutError as exc:
        session.rollback()
        log.error("payment %s of %s does not match: %s", result.payment_id, checkout.id, exc)
        return _refused(request, session, checkout, customer, str(exc), 409, form)
    session.refresh(checkout)
    if wants_json(request):
        return JSONResponse({"status": "succeeded", "redirect": f"/checkout/{checkout.id}/next"})
    if password is not None:
        return _hand_password_to_accounts(request, checkout, password)
    return after_purchase(request, session, checkout, customer)


def _give_back(request: Request, checkout: CheckoutSession, result: PaymentResult, reason: str) -> Response:
    """The buyer paid what the attempt no longer charges: the money goes back, and they are told."""
    try:
        if give_back(request.app.state.engine, provider_of(request), checkout.id, result, reason=reason) is None:
            # It completed the order meanwhile (the order was changed back): kept, the buyer goes on.
            next_url = f"/checkout/{checkout.id}/next"
            if wants_json(request):
                return JSONResponse({"status": "succeeded", "redirect": next_url})
            return RedirectResponse(next_url, status_code=303)
    except PaymentError:
        pass  # recorded as `refunding`: the provider's webhook, delivered again, finishes the refund
    returned_url = f"/checkout/{checkout.id}/returned"
    if wants_json(request):
        return JSONResponse({"status": "returned", "redirect": returned_url,
                             "message": "Your payment was returned: your order changed after it was started."},
                            status_code=409)
    return RedirectResponse(returned_url, status_code=303)


def _hand_password_to_accounts(request: Request, checkout: CheckoutSession, password: dict[str, str]) -> HTMLResponse:
    """The password chosen on the payment page goes from the buyer's browser straight to accounts
    (a self-submitting form): checkout never stores or publishes it."""
    urls = request.app.state.urls
    response = page(request, "hand_over.html", {
        "action": f"{urls.accounts_url}/setup/checkout",
        "fields": {"token": setup_token(request.app.state.secret_key, checkout.id), **password,
                   "next": f"{urls.checkout_url}/checkout/{checkout.id}/next"},
    })
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/checkout/{checkout_id}/complete", response_class=HTMLResponse)
async def after_provider_redirect(checkout_id: str, request: Request, customer: CustomerDep):
    """Where the provider sends the buyer back (3-D Secure, a redirecting payment method)."""
    return await to_thread.run_sync(_complete, request, checkout_id, customer, {})


@router.post("/checkout/{checkout_id}/complete", response_class=HTMLResponse)
async def after_provider_confirmation(checkout_id: str, request: Request, customer: CustomerDep):
    """Where the payment page's script posts the form once Stripe.js confirmed the payment, so that
    the fields that go on (the password chosen at checkout) go along."""
    return await to_thread.run_sync(_complete, request, checkout_id, customer, await _form(request))


def _complete(request: Request, checkout_id: str, customer, form: dict[str, str]) -> Response:
    with Session(request.app.state.engine) as session:
        checkout = checkout_or_404(session, checkout_id)
        password = None
        settings = handlers.post_purchase_settings(session, checkout)
        if form and settings.asks_password_at_checkout and not checkout.bought_before:
            try:
                password = _password_fields(form)
            except PaymentRefused:
                password = None  # the account page asks again
        if checkout.status == "paid" and password is not None and not handlers.customer_has_account(
                session, checkout.email):
            # Stripe's webhook often completes the purchase before the buyer's page comes back.
            return _hand_password_to_accounts(request, checkout, password)
        confirmed = _confirmed_payment(request, checkout, form)
        if checkout.status != "paid" and confirmed and returns.returned_payment(
                session, provider_of(request).name, confirmed) is not None:
            return RedirectResponse(f"/checkout/{checkout.id}/returned", status_code=303)
        if checkout.status == "paid" or not confirmed:
            return after_purchase(request, session, checkout, customer)
        result = provider_of(request).payment_result(confirmed)
        if result.attempt_id not in (None, checkout.id):
            raise HTTPException(status_code=404, detail="This payment is not one of this checkout.")
        if result.status in ("requires_action", "processing"):
            return page(request, "processing.html", {"checkout": checkout})
        return _on_payment_result(request, session, checkout, customer, result, {}, password)


def _confirmed_payment(request: Request, checkout: CheckoutSession, form: dict[str, str]) -> str | None:
    """The payment the buyer's browser confirmed: the one the page names (an older tab may have
    confirmed an intent made before the order changed), else the attempt's latest."""
    named = form.get("payment_id") or request.query_params.get("payment_intent") \
        or request.query_params.get("setup_intent")
    return named[:255] if named else checkout.provider_payment_id
