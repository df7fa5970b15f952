"""The customer's pages: the library (with what each delivery type gives: files to download, license
keys, a membership's lessons), and its JSON for scripts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from sqlmodel import Session

from postsale.entitlements import access_views, activity
from postsale.entitlements.adapters.tables import Lesson, Product
from postsale.entitlements.delivery import download, license_key, membership
from postsale.entitlements.delivery.base import product_settings
from postsale.entitlements.delivery.integration import IntegrationSettings
from postsale.entitlements.domain.content import is_open, opens_at
from postsale.entitlements.entrypoints.fields import no_nul_in_path
from postsale.runtime.activity import throttle_of
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.clock import utcnow
from postsale.runtime.db import SessionDep
from postsale.runtime.web import templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
# The last day something lasts: an end is the first moment without it (a grant "until 30 Nov"
# ends at midnight starting 1 Dec), so a date alone names the day before a midnight end.
templates.env.filters["last_day"] = lambda end: (end - timedelta(microseconds=1)).strftime("%d %b %Y")
router = APIRouter()
# Only on the routes with ids in their path: a dependency costs every request FastAPI's solving of
# it, and on a path without parameters this one has nothing to check.
NO_NUL_IN_PATH = [Depends(no_nul_in_path)]
CustomerDep = Annotated[CustomerSession | None, Depends(current_customer)]

# The library waits this many one-second refreshes for a purchase named in its address
# (`?purchase=<id>`, which checkout and accounts add when they send a buyer here) to arrive.
LIBRARY_WAIT_REFRESHES = 10
MAX_EXPECTED_PURCHASES = 20
MAX_ID_LENGTH = 100


class ProductOut(BaseModel):
    id: str
    name: str
    description: str
    delivery_type: str


def _waits(wait: str) -> int:
    """How often the waiting page refreshed already (a counter the page itself puts in its URL)."""
    return int(wait) if wait.isdigit() and len(wait) <= 3 else 0


def _library_url(base: str, purchases: list[str], **more: int) -> str:
    query = urlencode([("purchase", p) for p in purchases] + list(more.items()))
    return f"{base}?{query}" if query else base


@router.get("/library", response_class=HTMLResponse)
def library_page(request: Request, session: SessionDep, customer: CustomerDep,
                 purchase: Annotated[list[str], Query(description="A purchase the buyer just made, to wait for; "
                                                                  "may be repeated.")] = [],  # noqa: B006
                 wait: str = "0"):
    """What the customer may use, and what they no longer may, and why. Named purchases that have
    not arrived yet (the buyer comes straight from paying) are waited for, a few refreshes long;
    then the page says they are on their way."""
    expected = list(dict.fromkeys(p for p in purchase if 0 < len(p) <= MAX_ID_LENGTH))[:MAX_EXPECTED_PURCHASES]
    urls = request.app.state.urls
    if customer is None:
        return RedirectResponse(urls.login_url(next_url=_library_url(urls.library_url, expected)), status_code=303)
    seen = access_views.purchases_seen(session, customer.customer_id, expected)
    on_its_way = [p for p in expected if p not in seen]
    waited = _waits(wait)
    if on_its_way and waited < LIBRARY_WAIT_REFRESHES:
        return templates.TemplateResponse(request, "preparing.html", {
            "refresh_url": _library_url("/library", expected, wait=waited + 1)})
    products = access_views.customer_access(session, customer.customer_id)
    items = [p for p in products if p.available]
    page = templates.TemplateResponse(request, "library.html", {
        "customer": customer, "logout_url": f"{urls.accounts_url}/logout", "billing_url": f"{urls.checkout_url}/billing",
        "items": items, "ended": [p for p in products if not p.available], "on_its_way": bool(on_its_way),
        "deliveries": _deliveries(session, items),
    })
    activity.content_opened(session, throttle_of(request), customer_id=customer.customer_id, kind="library_visit",
                            now=utcnow())
    session.commit()
    return page


def _deliveries(session: Session, items: list[access_views.ProductAccess]) -> dict:
    """Per available product, what its delivery type shows in the library: a download product's
    files and downloads left (of its oldest active grant), the keys of a license product's active
    grants, an integration's link to its platform."""
    shown: dict = {}
    keys = license_key.keys_of(session, [g.id for p in items if p.delivery_type == "license_key" for g in p.active])
    for item in items:
        if item.delivery_type == "download":
            shown[item.product_id] = download.for_library(session, item.product_id, item.active[0])
        elif item.delivery_type == "license_key":
            shown[item.product_id] = [keys[g.id] for g in item.active if g.id in keys]
        elif item.delivery_type == "integration":
            shown[item.product_id] = product_settings(session.get(Product, item.product_id),
                                                      IntegrationSettings).access_url
    return shown


def _available(session: Session, customer: CustomerSession, product_id: str) -> access_views.ProductAccess | None:
    return next((p for p in access_views.library(session, customer.customer_id) if p.product_id == product_id), None)


@router.get("/library/products/{product_id}", response_class=HTMLResponse, dependencies=NO_NUL_IN_PATH)
def membership_page(product_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    """A membership's sections and lessons, each open or with the date it opens (drip, counted from
    when the customer's access began)."""
    if customer is None:
        urls = request.app.state.urls
        return RedirectResponse(urls.login_url(next_url=f"{urls.entitlements_url}/library/products/{product_id}"),
                                status_code=303)
    product = session.get(Product, product_id)
    if product is None or product.delivery_type != "membership":
        raise HTTPException(status_code=404, detail="There is no such membership.")
    access = _available(session, customer, product_id)
    if access is None:  # not bought, or access ended: the library says which
        return RedirectResponse("/library", status_code=303)
    content = membership.customer_content(session, product_id, access.since, utcnow())  # type: ignore[arg-type]
    return templates.TemplateResponse(request, "membership.html", {"product": product, "content": content})


@router.get("/library/products/{product_id}/lessons/{lesson_id}", response_class=HTMLResponse,
            dependencies=NO_NUL_IN_PATH)
def lesson_page(product_id: str, lesson_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    """One lesson, once it is open for the customer; before that, the date it opens."""
    if customer is None:
        urls = request.app.state.urls
        return RedirectResponse(urls.login_url(
            next_url=f"{urls.entitlements_url}/library/products/{product_id}/lessons/{lesson_id}"), status_code=303)
    product = session.get(Product, product_id)
    lesson = session.get(Lesson, lesson_id)
    if product is None or lesson is None or lesson.product_id != product_id:
        raise HTTPException(status_code=404, detail="There is no such lesson.")
    access = _available(session, customer, product_id)
    if access is None:  # not bought, or access ended: the library says which
        return RedirectResponse("/library", status_code=303)
    now = utcnow()
    if not is_open(access.since, lesson.drip_days, now):  # type: ignore[arg-type]
        return templates.TemplateResponse(request, "lesson_locked.html", {
            "product": product, "lesson": lesson, "opens_at": opens_at(access.since, lesson.drip_days)},  # type: ignore[arg-type]
            status_code=403)
    paragraphs = [p.strip() for p in lesson.body.split("\n\n") if p.strip()]
    page = templates.TemplateResponse(request, "lesson.html", {"product": product, "lesson": lesson,
                                                               "paragraphs": paragraphs})
    activity.lesson_opened(session, throttle_of(request), customer_id=customer.customer_id, product=product,
                           lesson=lesson, now=now)
    session.commit()
    activity.complete_product(session, customer_id=customer.customer_id, email=customer.email, product=product,
                              now=now)
    session.commit()
    return page


@router.get("/api/library", tags=["customer"])
async def library_json(request: Request, customer: CustomerDep) -> list[ProductOut]:
    """The products the logged-in customer may use now, newest first."""
    if customer is None:
        raise HTTPException(status_code=401, detail="log in first")
    # One statement, read from the event loop (scripts may ask this often): no ORM session, whose
    # dependency, begin and close cost more than the query, and no hop to the thread pool.
    rows = await request.app.state.loop_reads.rows(access_views.LIBRARY_ROWS, {"customer_id": customer.customer_id})
    return [ProductOut(id=p.product_id, name=p.name, description=p.description, delivery_type=p.delivery_type)
            for p in access_views.library_products(rows)]
