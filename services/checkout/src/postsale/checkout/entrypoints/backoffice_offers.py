"""The back office's offers: list, create and edit offers, with a copyable checkout link.

Every member of staff may look at the offers; creating or changing one (its price, its coupons,
everything it sells) is the owner's, like the JSON admin API's `POST /admin/offers`, whose use cases
these pages call so that an offer follows one set of rules whichever way it is made. The edit page
lives at `/admin/offers/{id}/edit`: `GET /admin/offers/{id}` stays the JSON API's.

A form's routes read the form (the products are a list of checkboxes) and then do the database work
in a worker thread, as the buyer's payment form does, so the event loop never waits on the database.
"""

from __future__ import annotations

from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select
from starlette.datastructures import FormData

from postsale.checkout import offers
from postsale.checkout.adapters.tables import CatalogProduct, Offer
from postsale.checkout.entrypoints import backoffice_offer_form as forms
from postsale.checkout.entrypoints.buyer import templates
from postsale.checkout.errors import CheckoutError
from postsale.checkout.records import offer_terms
from postsale.runtime.backoffice import (PER_PAGE, FormError, create_once, page_number, submission_of,
                                         submission_token)
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffDep, StaffSession, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)
MAX_CHOICES = 500  # products and offers a form lists
DONE = {"created": "The offer was created. Share its checkout link below.",
        "saved": "Your changes were saved. A new price counts for buyers from now on.",
        "coupon": "The coupon was added: buyers of this offer can use it now."}


def _offer(session: Session, offer_id: str) -> Offer:
    offer = session.get(Offer, offer_id) if len(offer_id) <= 64 and "\x00" not in offer_id else None
    if offer is None:
        raise HTTPException(status_code=404, detail="There is no such offer.")
    return offer


def checkout_link(request: Request, offer: Offer) -> str:
    return f"{request.app.state.urls.checkout_url}/offers/{offer.id}"


def _describe(offer: Offer) -> str:
    return offer_terms(offer).describe()


@pages.get("/offers", response_class=HTMLResponse)
def offers_page(request: Request, session: SessionDep, staff: StaffDep, page: str = "1"):
    """Every offer, newest first, with its price and funnel at a glance."""
    number = page_number(page[:10])
    shown, more = offers.offer_page(session, number, PER_PAGE)
    product_ids = {p for o in shown for p in o.product_ids}
    names = dict(session.exec(select(CatalogProduct.id, CatalogProduct.name)
                              .where(CatalogProduct.id.in_(product_ids))).all()) if product_ids else {}  # type: ignore[attr-defined]
    rows = [{"offer": o, "price": _describe(o), "products": [names.get(p, p) for p in o.product_ids],
             "link": checkout_link(request, o)} for o in shown]
    return templates.TemplateResponse(request, "backoffice/offers.html", {
        **backoffice_context(request, staff, "Offers"), "rows": rows, "page": number,
        "previous_url": f"/admin/offers?{urlencode({'page': number - 1})}" if number > 1 else None,
        "next_url": f"/admin/offers?{urlencode({'page': number + 1})}" if more else None,
    })


def _choices(session: Session, offer: Offer | None) -> dict:
    """What the form lets the seller pick: the catalogue's products, and the one-time offers that
    may be an order bump, upsell or downsell."""
    kept = offer.product_ids if offer else []  # an archived product stays in the offers that had it
    products = session.exec(select(CatalogProduct)
                            .where(CatalogProduct.archived_at.is_(None) | CatalogProduct.id.in_(kept))  # type: ignore[union-attr,attr-defined]
                            .order_by(CatalogProduct.name).limit(MAX_CHOICES)).all()
    add_ons = session.exec(select(Offer).where(Offer.billing_type == "one_time")
                           .order_by(Offer.created_at.desc()).limit(MAX_CHOICES)).all()  # type: ignore[attr-defined]
    return {"products": products,
            "add_ons": [(o.id, f"{o.name} · {_describe(o)}") for o in add_ons if offer is None or o.id != offer.id]}


def _form_context(request: Request, session: Session, staff: StaffSession, offer: Offer | None, form: dict,
                  error: str | None) -> dict:
    return {**backoffice_context(request, staff, "Offers"), **_choices(session, offer), "offer": offer,
            "form": form, "upsell_rows": forms.upsell_rows(form), "error": error, "can_change": staff.is_owner,
            "billing_types": forms.BILLING_TYPES, "intervals": forms.INTERVALS, "destinations": forms.DESTINATIONS,
            "on_cancel": forms.ON_CANCEL, "on_pause": forms.ON_PAUSE, "on_partial_refund": forms.ON_PARTIAL_REFUND,
            "durations": forms.DURATIONS, "entitlements_url": request.app.state.urls.entitlements_url}


@pages.get("/offers/new", response_class=HTMLResponse)
def new_offer_page(request: Request, session: SessionDep, owner: OwnerDep):
    return templates.TemplateResponse(request, "backoffice/offer_new.html",
                                      _form_context(request, session, owner, None, forms.blank_offer_form(), None))


@pages.post("/offers/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def create_offer(request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Creates the offer with `offers.create_offer`; a refused form comes back with its message."""
    return await to_thread.run_sync(_create_offer, request, session, owner, await request.form())


def _create_offer(request: Request, session: Session, owner: StaffSession, data: FormData) -> Response:
    form = forms.blank_offer_form()
    try:
        form = forms.read_offer_form(data)
        # Posted twice (a double click, a reload): the offer the first one made, nothing more.
        offer, _ = create_once(session, Offer, submission_of(form["submission"]),
                               lambda: offers.create_offer(session, **forms.offer_arguments(form)))
    except (FormError, CheckoutError) as exc:
        session.rollback()
        form["submission"] = form["submission"] or submission_token()  # the form, sent again, still makes one
        return templates.TemplateResponse(request, "backoffice/offer_new.html",
                                          _form_context(request, session, owner, None, form, str(exc)), status_code=422)
    return RedirectResponse(f"/admin/offers/{offer.id}/edit?done=created", status_code=303)


def _edit_page(request: Request, session: Session, staff: StaffSession, offer: Offer, *, form: dict | None = None,
               error: str | None = None, coupon_form: dict | None = None, coupon_error: str | None = None,
               done: str = "", status_code: int = 200) -> Response:
    coupons = [(c, forms.describe_coupon(c)) for c in offers.coupons_of_offer(session, offer.id)]
    return templates.TemplateResponse(request, "backoffice/offer_edit.html", {
        **_form_context(request, session, staff, offer, form or forms.offer_form(offer), error),
        "checkout_url": checkout_link(request, offer), "price": _describe(offer), "coupons": coupons,
        "coupon_form": coupon_form or forms.blank_coupon_form(), "coupon_error": coupon_error, "done": DONE.get(done),
    }, status_code=status_code)


@pages.get("/offers/{offer_id}/edit", response_class=HTMLResponse)
def edit_offer_page(offer_id: str, request: Request, session: SessionDep, staff: StaffDep, done: str = ""):
    """The offer's page: its checkout link, its settings (read-only for support) and its coupons."""
    return _edit_page(request, session, staff, _offer(session, offer_id), done=done[:20])


@pages.post("/offers/{offer_id}/edit", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def save_offer(offer_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Saves the offer with `offers.update_offer`; a refused form comes back with its message."""
    return await to_thread.run_sync(_save_offer, offer_id, request, session, owner, await request.form())


def _save_offer(offer_id: str, request: Request, session: Session, owner: StaffSession, data: FormData) -> Response:
    offer = _offer(session, offer_id)
    form = forms.offer_form(offer)
    try:
        form = forms.read_offer_form(data)
        offers.update_offer(session, offer, **forms.offer_arguments(form))
    except (FormError, CheckoutError) as exc:
        session.rollback()
        return _edit_page(request, session, owner, _offer(session, offer_id), form=form, error=str(exc),
                          status_code=422)
    session.commit()
    return RedirectResponse(f"/admin/offers/{offer.id}/edit?done=saved", status_code=303)


@pages.post("/offers/{offer_id}/coupons", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def add_coupon(offer_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Adds a coupon for this offer with `offers.create_coupon`."""
    return await to_thread.run_sync(_add_coupon, offer_id, request, session, owner, await request.form())


def _add_coupon(offer_id: str, request: Request, session: Session, owner: StaffSession, data: FormData) -> Response:
    offer = _offer(session, offer_id)
    form = forms.blank_coupon_form()
    try:
        form = forms.read_coupon_form(data)
        offers.create_coupon(session, forms.coupon_rules(form, offer))
    except (FormError, CheckoutError) as exc:
        session.rollback()
        return _edit_page(request, session, owner, _offer(session, offer_id), coupon_form=form,
                          coupon_error=str(exc), status_code=422)
    session.commit()
    return RedirectResponse(f"/admin/offers/{offer.id}/edit?done=coupon#coupons", status_code=303)
