"""Entitlements' HTTP side: the library page, the access check and the seller's admin API."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from postsale.entitlements import handlers
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.db import SessionDep
from postsale.runtime.web import require_admin, templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
router = APIRouter()
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])
CustomerDep = Annotated[CustomerSession | None, Depends(current_customer)]


class NewProduct(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    delivery_type: Literal["membership", "integration", "download", "none"]


class ProductOut(BaseModel):
    id: str
    name: str
    description: str
    delivery_type: str


class AccessOut(BaseModel):
    customer_id: str
    product_id: str
    has_access: bool
    grant_id: str | None = None
    reason: str | None = None
    granted_at: datetime | None = None


@admin.post("/products", status_code=201, response_model=ProductOut)
def create_product(body: NewProduct, session: SessionDep) -> ProductOut:
    product = handlers.create_product(session, name=body.name, description=body.description,
                                      delivery_type=body.delivery_type)
    session.commit()
    return ProductOut.model_validate(product, from_attributes=True)


@admin.get("/access", response_model=AccessOut)
def check_access(customer_id: str, product_id: str, session: SessionDep) -> AccessOut:
    """Whether a customer may use a product now, and the grant that says so."""
    grant = handlers.check_access(session, customer_id, product_id)
    if grant is None:
        return AccessOut(customer_id=customer_id, product_id=product_id, has_access=False)
    return AccessOut(customer_id=customer_id, product_id=product_id, has_access=True, grant_id=grant.id,
                     reason=grant.reason, granted_at=grant.created_at)


class LedgerEntryOut(BaseModel):
    id: str
    product_id: str
    action: str
    reason: str
    actor: str
    cause_event_id: str | None
    purchase_id: str | None
    created_at: datetime
    expires_at: datetime | None


@admin.get("/customers/{customer_id}/access-ledger", response_model=list[LedgerEntryOut])
def access_ledger(customer_id: str, session: SessionDep) -> list[LedgerEntryOut]:
    """Every grant and revoke of a customer, oldest first: who or what, when and why."""
    return [LedgerEntryOut.model_validate(e, from_attributes=True) for e in handlers.ledger(session, customer_id)]


@router.get("/library", response_class=HTMLResponse)
def library_page(request: Request, session: SessionDep, customer: CustomerDep):
    if customer is None:
        urls = request.app.state.urls
        return RedirectResponse(urls.login_url(next_url=urls.library_url), status_code=303)
    items = handlers.library(session, customer.customer_id)
    return templates.TemplateResponse(
        request, "library.html",
        {"customer": customer, "items": items, "logout_url": f"{request.app.state.urls.accounts_url}/logout"},
    )


@router.get("/api/library", tags=["customer"])
def library_json(session: SessionDep, customer: CustomerDep) -> list[ProductOut]:
    if customer is None:
        raise HTTPException(status_code=401, detail="log in first")
    return [ProductOut.model_validate(p, from_attributes=True) for p, _ in handlers.library(session, customer.customer_id)]
