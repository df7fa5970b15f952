"""The back office's view of a customer's access, served by entitlements (whose ledger it is): each
product the customer has or had, available or not and why (the grants that give it, or the change
that ended it), the ledger newest first, and granting or revoking a product by hand.

Granting and revoking never touch billing (a refund or a cancellation is checkout's), so support may
do both; a revoke asks for confirmation first. A grant's form carries a one-time token, so posting
it twice grants once. The page sits beside accounts' profile of the same customer
(`/admin/customers/{id}/profile`) and links to it and to the customer's sales in checkout.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from postsale.entitlements import access_views, grants, products
from postsale.entitlements.adapters.tables import Customer, Grant, Product
from postsale.entitlements.entrypoints.backoffice_forms import is_id, render, whole_number
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.backoffice import (FormError, create_once, form_text, not_found, page_number, submission_of,
                                         typed_again)
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import StaffDep, StaffSession
from postsale.runtime.web import normalize_email

pages = APIRouter(prefix="/admin", include_in_schema=False)
ACTIVE = "Customers"
MAX_NOTE, MAX_EMAIL, MAX_PICKER = 2000, 254, 1000
GIVING = ("active", "suspended")  # what a revoke can still end
LAST_DAY = date(2199, 12, 31)  # the latest "until" a seller may give (later ones overflow, and mean "for good")


def _customer_links(request: Request, customer_id: str) -> dict[str, str]:
    urls = request.app.state.urls
    return {"profile": f"{urls.accounts_url}/admin/customers/{customer_id}/profile",
            "sales": f"{urls.checkout_url}/admin/sales?{urlencode({'customer': customer_id})}"}


def _no_customer(request: Request, customer_id: str) -> Response:
    return not_found(request, templates, f"There is no customer {customer_id[:100]}. Search the customers list "
                                         "instead.")


def _no_grant(request: Request) -> Response:
    return not_found(request, templates, "This customer has no such grant. Open their access page instead.")


def _done(session: Session, customer_id: str, done: str, grant_id: str, names: dict[str, str]) -> str | None:
    """What a grant or a revoke did, about the grant the address names, with the product's name as
    entitlements has it (never text from the address): nothing when that grant is not this
    customer's or did not end as the address says."""
    found = _grant(session, customer_id, grant_id)
    if found is None:
        return None
    name = names.get(found.product_id) or found.product_name
    if done == "granted" and found.source == "seller":
        return f"{name} is granted."
    if done == "revoked" and found.status not in GIVING:
        return f"The grant of {name} is revoked; billing is not touched."
    return None


def _grantable(session: Session) -> list[Product]:
    """The products a seller may grant by hand: active ones by name, then archived ones."""
    return list(session.exec(select(Product).order_by(Product.archived_at.is_not(None),  # type: ignore[union-attr]
                                                      Product.name, Product.id).limit(MAX_PICKER)).all())


def access_page(request: Request, session: Session, staff: StaffSession, customer_id: str, *, page: int = 1,
                done: str = "", done_grant: str = "", form: dict | None = None, error: str | None = None,
                status_code: int = 200) -> Response:
    customer = session.get(Customer, customer_id)
    products_access = access_views.customer_access(session, customer_id)
    entries, more = access_views.ledger_page(session, customer_id, page)
    names = {p.product_id: p.name for p in products_access}
    message = _done(session, customer_id, done, done_grant, names) if done else None

    def page_url(n: int) -> str:
        return f"/admin/access/{customer_id}?" + urlencode({"page": n}) + "#ledger"

    return render(request, staff, "access.html", ACTIVE, status_code=status_code, customer_id=customer_id,
                  customer=customer, products=products_access, entries=entries, names=names, page=page,
                  previous_url=page_url(page - 1) if page > 1 else None, next_url=page_url(page + 1) if more else None,
                  links=_customer_links(request, customer_id), done=message, grantable=_grantable(session),
                  form=form or {}, error=error, limits={"note": MAX_NOTE, "email": MAX_EMAIL},
                  last_day=LAST_DAY.isoformat())


@pages.get("/access/{customer_id}", response_class=HTMLResponse)
def customer_access(customer_id: str, request: Request, session: SessionDep, staff: StaffDep, page: str = "1",
                    done: str = "", grant: str = ""):
    """What the customer may use now and why, what they lost and why, and every change, newest first."""
    if not is_id(customer_id):
        return _no_customer(request, customer_id)
    return access_page(request, session, staff, customer_id, page=page_number(page), done=done, done_grant=grant)


def _done_url(customer_id: str, done: str, grant_id: str) -> str:
    return f"/admin/access/{customer_id}?" + urlencode({"done": done, "grant": grant_id})


def _end_of(day: str) -> datetime | None:
    """The end (UTC) of the day typed as YYYY-MM-DD, as a date input sends it; None when empty."""
    day = day.strip()
    if not day:
        return None
    try:
        if len(day) != 10:
            raise ValueError(day)
        last = date.fromisoformat(day)
    except ValueError:
        raise FormError("Until: enter a date like 2027-01-31, or leave it empty.") from None
    if last > LAST_DAY:
        raise FormError(f"Until: choose a day up to {LAST_DAY:%d %b %Y}, or leave it empty to grant it for good.")
    return datetime.combine(last, time(), timezone.utc) + timedelta(days=1)


@pages.post("/access/{customer_id}/grant", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def grant(customer_id: str, request: Request, session: SessionDep, staff: StaffDep,
          product_id: Annotated[str, Form()] = "", days: Annotated[str, Form()] = "",
          until: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "",
          submission: Annotated[str, Form()] = ""):
    """Gives the customer a product by hand, for good, for some days or until a date; billing is not
    touched. The ledger says the seller did it, which staff member, and the note. The same form
    posted again (its `submission` token) grants nothing more and answers as the first did."""
    if not is_id(customer_id):
        return _no_customer(request, customer_id)
    typed = {"product_id": typed_again(product_id, 100), "days": typed_again(days, 12),
             "until": typed_again(until, 10), "note": typed_again(note, MAX_NOTE),
             "email": typed_again(email, MAX_EMAIL)}
    try:
        token = submission_of(submission)
        if not is_id(product_id) or session.get(Product, product_id) is None:
            raise FormError("Choose the product to grant.")
        access_days = whole_number(days, label="Days", low=1, high=36_500)
        ends = _end_of(until)
        if access_days is not None and ends is not None:
            raise FormError("Give either a number of days or an end date, not both.")
        clean_note = form_text(note, label="Note", max_length=MAX_NOTE) or None
        address = None
        if email.strip():
            address = normalize_email(form_text(email, label="Email", max_length=MAX_EMAIL))
            if address is None:
                raise FormError("Email: enter the customer's email address, like ann@example.com.")

        def give() -> Grant:
            try:
                return grants.grant_by_seller(session, customer_id=customer_id, product_id=product_id,
                                              days=access_days, expires_at=ends, note=clean_note, email=address,
                                              actor_id=staff.staff_id)
            except grants.EndInThePast:
                raise FormError("Until: choose a day from today on.") from None
            except grants.EmailNeeded:
                raise FormError("This customer has bought nothing here yet: enter their email address.") from None
            except grants.EmailMismatch as exc:
                raise FormError(f"Email: {exc}. Leave it empty to use the one entitlements knows.") from None
            except products.UnknownProduct:
                raise FormError("Choose the product to grant.") from None

        made, _ = create_once(session, Grant, token, give)
    except FormError as exc:
        session.rollback()
        return access_page(request, session, staff, customer_id, form=typed, error=str(exc), status_code=422)
    return RedirectResponse(_done_url(customer_id, "granted", made.id), status_code=303)


def _grant(session: Session, customer_id: str, grant_id: str) -> Grant | None:
    found = session.get(Grant, grant_id) if is_id(customer_id) and is_id(grant_id) else None
    return found if found is not None and found.customer_id == customer_id else None


def _revoke_page(request: Request, session: Session, staff: StaffSession, found: Grant, *, note: str = "",
                 error: str | None = None, status_code: int = 200) -> Response:
    state = next((p for p in access_views.customer_access(session, found.customer_id)
                  if p.product_id == found.product_id), None)
    others = [g for g in (state.active if state else []) if g.id != found.id]
    return render(request, staff, "revoke.html", ACTIVE, status_code=status_code, grant=found,
                  name=state.name if state else found.product_name, others=others,
                  giving=found.status in GIVING, limits={"note": MAX_NOTE}, note=note, error=error,
                  back=f"/admin/access/{found.customer_id}")


@pages.get("/access/{customer_id}/grants/{grant_id}/revoke", response_class=HTMLResponse)
def confirm_revoke(customer_id: str, grant_id: str, request: Request, session: SessionDep, staff: StaffDep):
    """Asks before access is removed: what the customer loses, and that billing is not touched."""
    found = _grant(session, customer_id, grant_id)
    if found is None:
        return _no_grant(request)
    return _revoke_page(request, session, staff, found, status_code=200 if found.status in GIVING else 409)


@pages.post("/access/{customer_id}/grants/{grant_id}/revoke", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def revoke(customer_id: str, grant_id: str, request: Request, session: SessionDep, staff: StaffDep,
           note: Annotated[str, Form()] = ""):
    """Ends the grant now; the customer keeps the product only through another grant. Billing is not
    touched. Revoking a grant that has ended already changes nothing."""
    found = _grant(session, customer_id, grant_id)
    if found is None:
        return _no_grant(request)
    if found.status not in GIVING:
        return _revoke_page(request, session, staff, found, status_code=409)
    try:
        clean_note = form_text(note, label="Note", max_length=MAX_NOTE) or None
    except FormError as exc:
        return _revoke_page(request, session, staff, found, note=typed_again(note, MAX_NOTE), error=str(exc),
                            status_code=422)
    grants.revoke_by_seller(session, customer_id=customer_id, grant_id=found.id, note=clean_note,
                            actor_id=staff.staff_id)
    session.commit()
    return RedirectResponse(_done_url(customer_id, "revoked", found.id), status_code=303)

