"""The seller's admin API: products, the access check, each customer's access and why, and
granting or revoking by hand (which never touches billing)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from postsale.entitlements import handlers
from postsale.entitlements.adapters.tables import Grant
from postsale.runtime.clock import as_utc
from postsale.runtime.db import SessionDep
from postsale.runtime.web import normalize_email, require_admin

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])


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


class GrantOut(BaseModel):
    id: str
    product_id: str
    source: Literal["purchase", "seller"] = Field(description="A purchase (with the subscription or payment plan "
                                                              "it started), or the seller's manual grant.")
    purchase_id: str | None
    status: Literal["active", "suspended", "revoked", "expired"]
    granted_because: str = Field(description="`purchase` or `granted by the seller`.")
    reason: str = Field(description="Why its newest change happened: `purchase`, `full refund`, `dispute opened`, ...")
    granted_at: datetime
    expires_at: datetime | None = Field(description="The end of an access period of N days; empty: for good.")
    ends_at: datetime | None = Field(description="When its access ends by itself (the period's end, a cancelled "
                                                 "billing's end); empty: it does not.")
    ends_because: str | None
    changed_at: datetime
    note: str | None

    @classmethod
    def of(cls, grant: Grant) -> "GrantOut":
        return cls(id=grant.id, product_id=grant.product_id, source=grant.source,  # type: ignore[arg-type]
                   purchase_id=grant.purchase_id, status=grant.status,  # type: ignore[arg-type]
                   granted_because=handlers.why_granted(grant), reason=grant.reason,
                   granted_at=as_utc(grant.granted_at), expires_at=as_utc(grant.expires_at),
                   ends_at=as_utc(grant.ends_at), ends_because=grant.ends_because,
                   changed_at=as_utc(grant.changed_at), note=grant.note)


class ProductAccessOut(BaseModel):
    product_id: str
    product_name: str
    available: bool
    until: datetime | None = Field(description="When available access ends by itself; empty: it does not.")
    active_grants: list[GrantOut] = Field(description="Why it is available: the grants that give it. Any one is "
                                                      "enough; revoking one leaves the others.")
    unavailable_because: str | None = Field(description="Why it is not: the reason of the newest change that ended "
                                                        "or suspended one of its grants.")
    unavailable_since: datetime | None
    grants: list[GrantOut] = Field(description="Every grant of the product, newest change first.")


class CustomerAccessOut(BaseModel):
    customer_id: str
    email: str | None
    products: list[ProductAccessOut]


class NewGrant(BaseModel):
    product_id: str = Field(min_length=1, max_length=100)
    days: int | None = Field(default=None, ge=1, le=36500, description="Access for this many days; empty: for good.")
    note: str | None = Field(default=None, max_length=2000, description="Kept in the ledger with the grant.")
    email: str | None = Field(default=None, max_length=254,
                              description="The customer's email; needed only for a customer with no purchase here.")


class Revocation(BaseModel):
    note: str | None = Field(default=None, max_length=2000, description="Kept in the ledger with the revoke.")


class LedgerEntryOut(BaseModel):
    id: str
    seq: int = Field(description="Orders a customer's entries, even two made at the same instant.")
    product_id: str
    grant_id: str | None
    action: Literal["grant", "revoke", "suspend", "restore", "expire"]
    reason: str
    actor: str
    actor_id: str | None
    note: str | None
    cause_event_id: str | None
    cause_event_type: str | None
    purchase_id: str | None
    created_at: datetime
    expires_at: datetime | None


@admin.post("/products", status_code=201, response_model=ProductOut)
def create_product(body: NewProduct, session: SessionDep) -> ProductOut:
    product = handlers.create_product(session, name=body.name, description=body.description,
                                      delivery_type=body.delivery_type)
    session.commit()
    return ProductOut.model_validate(product, from_attributes=True)


@admin.get("/access", response_model=AccessOut)
def check_access(customer_id: str, product_id: str, session: SessionDep) -> AccessOut:
    """Whether a customer may use a product now, and the (oldest) grant that says so."""
    grant = handlers.check_access(session, customer_id, product_id)
    if grant is None:
        return AccessOut(customer_id=customer_id, product_id=product_id, has_access=False)
    return AccessOut(customer_id=customer_id, product_id=product_id, has_access=True, grant_id=grant.id,
                     reason=handlers.why_granted(grant), granted_at=grant.granted_at)


@admin.get("/customers/{customer_id}/access", response_model=CustomerAccessOut)
def customer_access(customer_id: str, session: SessionDep) -> CustomerAccessOut:
    """Each product the customer has or had: whether it is available now, why (the grants that
    give it, and their sources) or why not (the newest revoke's or suspension's reason)."""
    products = handlers.customer_access(session, customer_id)
    return CustomerAccessOut(customer_id=customer_id, email=handlers.customer_email(session, customer_id), products=[
        ProductAccessOut(product_id=p.product_id, product_name=p.name, available=p.available, until=p.until,
                         active_grants=[GrantOut.of(g) for g in p.active],
                         unavailable_because=p.unavailable_because, unavailable_since=p.unavailable_since,
                         grants=[GrantOut.of(g) for g in p.grants])
        for p in products])


@admin.post("/customers/{customer_id}/grants", status_code=201, response_model=GrantOut)
def grant_access(customer_id: str, body: NewGrant, session: SessionDep) -> GrantOut:
    """Gives the customer a product by hand, for good or for `days`; billing is not touched.
    Published as `AccessGranted` (actor `seller`, reason `granted by the seller`)."""
    email = None
    if body.email is not None:
        email = normalize_email(body.email)
        if email is None:
            raise HTTPException(status_code=422, detail="email: not an email address")
    try:
        grant = handlers.grant_by_seller(session, customer_id=customer_id, product_id=body.product_id,
                                         days=body.days, note=body.note, email=email)
    except handlers.UnknownProduct:
        raise HTTPException(status_code=404, detail=f"unknown product {body.product_id}") from None
    except (handlers.EmailNeeded, handlers.EmailMismatch) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    session.commit()
    return GrantOut.of(grant)


@admin.post("/customers/{customer_id}/grants/{grant_id}/revoke", response_model=GrantOut)
def revoke_access(customer_id: str, grant_id: str, session: SessionDep, body: Revocation | None = None) -> GrantOut:
    """Takes one grant back by hand (a purchase's or the seller's own); billing is not touched, and
    the customer's other grants of the product stay. Published as `AccessRevoked` (actor `seller`,
    reason `revoked by the seller`). Revoking again changes nothing."""
    try:
        grant = handlers.revoke_by_seller(session, customer_id=customer_id, grant_id=grant_id,
                                          note=body.note if body else None)
    except handlers.UnknownGrant:
        raise HTTPException(status_code=404, detail=f"customer {customer_id} has no grant {grant_id}") from None
    session.commit()
    return GrantOut.of(grant)


@admin.get("/customers/{customer_id}/access-ledger", response_model=list[LedgerEntryOut])
def access_ledger(customer_id: str, session: SessionDep) -> list[LedgerEntryOut]:
    """Every grant, revoke, suspension, restoration and expiry of a customer, in order: who or
    what, when, why, and the event that caused it."""
    return [LedgerEntryOut.model_validate(e, from_attributes=True) for e in handlers.ledger(session, customer_id)]
