"""The back office's customer pages, served by accounts (whose data they show): the list with its
search, a customer's profile (last activity, the account emails and whether the relay took them),
adding a customer by hand, and resending the setup or login link.

They sit under `/admin/customers` beside the JSON admin API (bearer token) on paths it does not use,
so the Ingress routes the prefix to accounts alone.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from postsale.accounts import customers
from postsale.accounts.adapters.tables import Customer
from postsale.accounts.domain import setup as rules
from postsale.accounts.entrypoints.staff_pages import templates
from postsale.runtime.backoffice import not_found, page_number
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OWNER_ONLY, StaffDep, backoffice_context
from postsale.runtime.web import normalize_email

pages = APIRouter(prefix="/admin/customers", include_in_schema=False)
MAX_SEARCH = 200
OFFER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
SENT = {"setup_link": "A new setup link", "login_link": "A login link and code"}


@pages.get("", response_class=HTMLResponse)
def customers_page(request: Request, session: SessionDep, staff: StaffDep, q: str = "", page: str = "1"):
    """Every customer, newest first, or those whose email or name contains `q`."""
    q, number = q[:MAX_SEARCH].replace("\x00", ""), page_number(page)
    found, more = customers.search(session, q, number)

    def page_url(n: int) -> str:
        return "/admin/customers?" + urlencode({**({"q": q} if q else {}), "page": n})

    return templates.TemplateResponse(request, "backoffice/customers.html", {
        **backoffice_context(request, staff, "Customers"), "q": q, "customers": found, "page": number,
        "previous_url": page_url(number - 1) if number > 1 else None, "next_url": page_url(number + 1) if more else None,
    })


def _new_customer_page(request: Request, staff, *, form: dict | None = None, error: str | None = None,
                       status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, "backoffice/new_customer.html", {
        **backoffice_context(request, staff, "Customers"), "form": form or {}, "error": error,
        "limits": {"name": rules.MAX_NAME_LENGTH, "email": rules.MAX_EMAIL_LENGTH},
    }, status_code=status_code)


@pages.get("/new", response_class=HTMLResponse)
def new_customer_page(request: Request, staff: StaffDep):
    return _new_customer_page(request, staff)


@pages.post("/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def add_customer(request: Request, session: SessionDep, staff: StaffDep, email: Annotated[str, Form()] = "",
                 first_name: Annotated[str, Form()] = "", last_name: Annotated[str, Form()] = "",
                 offer_ids: Annotated[str, Form()] = ""):
    """Adds a customer by hand; they get the welcome email with their login information."""
    form = {"email": email[:rules.MAX_EMAIL_LENGTH], "first_name": first_name[:rules.MAX_NAME_LENGTH],
            "last_name": last_name[:rules.MAX_NAME_LENGTH], "offer_ids": offer_ids[:2000]}
    offers = list(dict.fromkeys(o for o in re.split(r"[\s,]+", offer_ids[:2000]) if o))
    normalized = normalize_email(email)
    error = None
    if normalized is None:
        error = "Enter the customer's email address."
    elif not first_name.strip() or not last_name.strip():
        error = "Enter the customer's first and last name."
    elif "\x00" in first_name + last_name:
        error = "A name cannot hold NUL characters."
    elif len(first_name) > rules.MAX_NAME_LENGTH or len(last_name) > rules.MAX_NAME_LENGTH:
        error = f"A name can be at most {rules.MAX_NAME_LENGTH} characters."
    elif len(offers) > 50 or not all(OFFER_ID.match(o) for o in offers):
        error = "Offers to grant: up to 50 offer ids (like offer_1a2b3c), separated by commas."
    if offers and not staff.is_owner:
        # Granting an offer by hand gives away what is otherwise sold: like a refund or a price, the owner's call.
        return _new_customer_page(request, staff, form=form, error=OWNER_ONLY, status_code=403)
    if error:
        return _new_customer_page(request, staff, form=form, error=error, status_code=422)
    try:
        customer = customers.add_customer(session, email=normalized, first_name=first_name, last_name=last_name,
                                          offer_ids=offers)
    except customers.CustomerExists as exc:
        session.rollback()
        return _new_customer_page(request, staff, form=form, status_code=409,
                                  error=f"{exc.customer.email} is a customer already: open their profile to "
                                        f"resend the setup or login link.")
    session.commit()
    return RedirectResponse(f"/admin/customers/{customer.id}/profile?added=1", status_code=303)


def _customer(session: Session, customer_id: str) -> Customer | None:
    return session.get(Customer, customer_id) if len(customer_id) <= 100 and "\x00" not in customer_id else None


def _not_found(request: Request, customer_id: str) -> Response:
    return not_found(request, templates, f"There is no customer {customer_id[:100]}. Search the customers list "
                                         f"instead.", title="No such customer")


@pages.get("/{customer_id}/profile", response_class=HTMLResponse)
def profile_page(customer_id: str, request: Request, session: SessionDep, staff: StaffDep, added: str = "",
                 sent: str = ""):
    """Who the customer is, whether the account is set up, what they did last, and the account emails."""
    customer = _customer(session, customer_id)
    if customer is None:
        return _not_found(request, customer_id)
    return templates.TemplateResponse(request, "backoffice/customer.html", {
        **backoffice_context(request, staff, "Customers"), "customer": customers.customer_view(session, customer),
        "added": added == "1", "sent": SENT.get(sent), "elsewhere": _elsewhere(request, customer),
    })


def _elsewhere(request: Request, customer: Customer) -> dict[str, str]:
    """The customer's pages that other services serve from their own data: purchases in checkout,
    access in entitlements, emails in notifications."""
    urls = request.app.state.urls
    return {"sales": f"{urls.checkout_url}/admin/sales?{urlencode({'customer': customer.id})}",
            "access": f"{urls.entitlements_url}/admin/access/{customer.id}",
            "emails": f"{urls.notifications_url}/admin/mail/sent?{urlencode({'to': customer.email})}"}


@pages.post("/{customer_id}/resend", dependencies=[Depends(require_csrf)])
def resend_link(customer_id: str, request: Request, session: SessionDep, staff: StaffDep) -> Response:
    """A new setup link, or a login link and code once the account is set up."""
    customer = _customer(session, customer_id)
    if customer is None:
        return _not_found(request, customer_id)
    sent = customers.resend_link(session, customer)
    session.commit()
    return RedirectResponse(f"/admin/customers/{customer.id}/profile?sent={sent}", status_code=303)
