"""The customer's pages: the library, and its JSON for scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from postsale.entitlements import handlers
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.db import SessionDep
from postsale.runtime.web import templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
router = APIRouter()
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
    seen = handlers.purchases_seen(session, customer.customer_id, expected)
    on_its_way = [p for p in expected if p not in seen]
    waited = _waits(wait)
    if on_its_way and waited < LIBRARY_WAIT_REFRESHES:
        return templates.TemplateResponse(request, "preparing.html", {
            "refresh_url": _library_url("/library", expected, wait=waited + 1)})
    products = handlers.customer_access(session, customer.customer_id)
    return templates.TemplateResponse(request, "library.html", {
        "customer": customer, "logout_url": f"{urls.accounts_url}/logout", "billing_url": f"{urls.checkout_url}/billing",
        "items": [p for p in products if p.available], "ended": [p for p in products if not p.available],
        "on_its_way": bool(on_its_way),
    })


@router.get("/api/library", tags=["customer"])
def library_json(session: SessionDep, customer: CustomerDep) -> list[ProductOut]:
    """The products the logged-in customer may use now, newest first."""
    if customer is None:
        raise HTTPException(status_code=401, detail="log in first")
    return [ProductOut(id=p.product_id, name=p.name, description=p.description, delivery_type=p.delivery_type)
            for p in handlers.library(session, customer.customer_id)]
