"""What the buyer's pages share: the templates, the customer, the provider, and where a paid buyer
goes next (the funnel, then the account page or the destination)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from postsale.checkout import handlers
from postsale.checkout.adapters.payments.port import PaymentProvider
from postsale.checkout.adapters.tables import CheckoutSession
from postsale.checkout.customers import GRANTED
from postsale.checkout.domain.money import format_major, format_money
from postsale.checkout.domain.post_purchase import next_step
from postsale.checkout.domain.setup_tokens import setup_token
from postsale.contracts.events import DELIVERY_KIND_WORDS
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.web import templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
templates.env.filters["money"] = format_money
templates.env.filters["major"] = format_major
templates.env.filters["delivery_words"] = lambda kind: DELIVERY_KIND_WORDS.get(kind, kind)
CustomerDep = Annotated[CustomerSession | None, Depends(current_customer)]
MAX_FIELD = 1024


def provider_of(request: Request) -> PaymentProvider:
    return request.app.state.payments


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def page(request: Request, template: str, context: dict, status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)



def checkout_or_404(session: Session, checkout_id: str) -> CheckoutSession:
    checkout = session.get(CheckoutSession, checkout_id[:64])
    if checkout is None or checkout.status == GRANTED:  # a seller's grant has no buyer and no page
        raise HTTPException(status_code=404, detail="This checkout does not exist or has expired.")
    return checkout



def logged_in_as_buyer(checkout: CheckoutSession, customer: CustomerSession | None) -> bool:
    return customer is not None and customer.email == checkout.email



def after_purchase(request: Request, session: Session, checkout: CheckoutSession,
                    customer: CustomerSession | None) -> Response:
    if checkout.status != "paid":
        return RedirectResponse(f"/checkout/{checkout.id}", status_code=303)
    if handlers.funnel_position(checkout) is not None:
        return RedirectResponse(f"/checkout/{checkout.id}/upsell", status_code=303)
    urls = request.app.state.urls
    settings = handlers.post_purchase_settings(session, checkout)
    purchase = handlers.primary_purchase(session, checkout)
    has_account = handlers.customer_has_account(session, checkout.email)
    step = next_step(settings, has_account=has_account, bought_before=checkout.bought_before)
    if step == "password_set" and not logged_in_as_buyer(checkout, customer):
        step = "account_page"  # the password did not reach accounts (a redirect lost it): ask there
    if step == "library":
        # Named in the address, so the library waits for it instead of showing the library without it.
        return RedirectResponse(f"{urls.library_url}?{urlencode({'purchase': purchase.id})}", status_code=303)
    if step == "account_page":
        token = setup_token(request.app.state.secret_key, checkout.id)
        query = urlencode({"purchase": purchase.id, "token": token})
        return RedirectResponse(f"{urls.accounts_url}/setup?{query}", status_code=303)
    destination = handlers.after_setup_url(urls, checkout, settings, purchase.id)
    return RedirectResponse(destination or f"{urls.library_url}?{urlencode({'purchase': purchase.id})}",
                            status_code=303)

