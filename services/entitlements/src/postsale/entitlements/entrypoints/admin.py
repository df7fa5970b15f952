"""The seller's admin API: products and their delivery settings, the access check, each
customer's access and why, and granting or revoking by hand (which never touches billing)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, ValidationError, model_validator

from postsale.entitlements import access_views, grants, products
from postsale.entitlements.adapters.tables import Grant, Product
from postsale.entitlements.delivery import strategy_for
from postsale.entitlements.delivery.base import product_settings
from postsale.entitlements.delivery.download import DownloadSettings
from postsale.entitlements.delivery.integration import IntegrationSettings
from postsale.entitlements.delivery.license_key import LicenseKeySettings
from postsale.entitlements.delivery.none import FulfilmentSettings
from postsale.entitlements.entrypoints.fields import Id, Text, no_nul_in_path
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import SessionDep
from postsale.runtime.web import Moment, RequestBody, normalize_email, require_admin

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin), Depends(no_nul_in_path)], tags=["admin"])


DeliveryTypeName = Literal["membership", "integration", "download", "license_key", "none"]
# Which settings object goes with which delivery type (a membership has none: its content is managed
# through /admin/products/{id}/sections).
SETTINGS_FIELD = {"download": "download", "integration": "integration", "license_key": "license_key",
                  "none": "fulfilment"}
SETTINGS_MODELS = {"download": DownloadSettings, "integration": IntegrationSettings, "license_key": LicenseKeySettings,
                   "fulfilment": FulfilmentSettings}


class DeliverySettingsIn(RequestBody):
    """The settings of the product's delivery type; give only the one that matches it."""

    download: DownloadSettings | None = Field(default=None, description="For `download`.")
    integration: IntegrationSettings | None = Field(default=None, description="For `integration`.")
    license_key: LicenseKeySettings | None = Field(default=None, description="For `license_key`.")
    fulfilment: FulfilmentSettings | None = Field(default=None, description="For `none`.")

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, data: object) -> object:
        """Settings as strict as the body: a misspelt one is refused rather than dropped (the PUT
        would reset it to its default), and `true` is not a limit of 1. The settings' own models
        stay lenient, since they also read what products stored."""
        for name, model in SETTINGS_MODELS.items():
            given = data.get(name) if isinstance(data, dict) else None
            if not isinstance(given, dict):
                continue
            unknown = sorted(set(given) - set(model.model_fields))
            if unknown:
                raise ValueError(f"{name}: {', '.join(map(str, unknown))}: not a setting (known: "
                                 f"{', '.join(model.model_fields)})")
            try:
                model.model_validate(given, strict=True)
            except ValidationError as exc:
                raise ValueError("; ".join(f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                           for e in exc.errors())) from None
        return data

    def settings_for(self, delivery_type: str) -> dict | None:
        wanted = SETTINGS_FIELD.get(delivery_type)
        extra = [name for name in SETTINGS_FIELD.values() if name != wanted and getattr(self, name) is not None]
        if extra:
            raise ValueError(f"{', '.join(extra)}: not a setting of a {delivery_type} product")
        given = getattr(self, wanted) if wanted else None
        return given.model_dump(exclude_unset=True) if given is not None else None


class NewProduct(DeliverySettingsIn):
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=5000)
    delivery_type: DeliveryTypeName

    @model_validator(mode="after")
    def _settings_match_the_type(self) -> "NewProduct":
        self.settings_for(self.delivery_type)
        return self


class ProductOut(BaseModel):
    id: str
    name: str
    description: str
    delivery_type: str
    download: DownloadSettings | None = None
    integration: IntegrationSettings | None = Field(default=None, description="With its signing secret.")
    license_key: LicenseKeySettings | None = None
    fulfilment: FulfilmentSettings | None = None

    @classmethod
    def of(cls, product: Product) -> "ProductOut":
        out = cls(id=product.id, name=product.name, description=product.description,
                  delivery_type=product.delivery_type)
        field = SETTINGS_FIELD.get(product.delivery_type)
        if field:
            setattr(out, field, product_settings(product, strategy_for(product.delivery_type).settings_model))
        return out


class AccessOut(BaseModel):
    customer_id: str
    product_id: str
    has_access: bool
    grant_id: str | None = None
    reason: str | None = None
    granted_at: datetime | None = None


class GrantOut(BaseModel):
    id: str
    customer_id: str
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
    download_limit: int | None = Field(default=None, description="This grant's own download limit; empty: the "
                                                                 "product's.")

    @classmethod
    def of(cls, grant: Grant) -> "GrantOut":
        return cls(id=grant.id, customer_id=grant.customer_id, product_id=grant.product_id,
                   source=grant.source, download_limit=grant.download_limit,  # type: ignore[arg-type]
                   purchase_id=grant.purchase_id, status=grant.status,  # type: ignore[arg-type]
                   granted_because=access_views.why_granted(grant), reason=grant.reason,
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


class NewGrant(RequestBody):
    product_id: str = Field(min_length=1, max_length=100)
    days: int | None = Field(default=None, ge=1, le=36500, description="Access for this many days; empty: for good.")
    note: str | None = Field(default=None, max_length=2000, description="Kept in the ledger with the grant.")
    email: str | None = Field(default=None, max_length=254,
                              description="The customer's email; needed only for a customer with no purchase here.")


class Revocation(RequestBody):
    note: str | None = Field(default=None, max_length=2000, description="Kept in the ledger with the revoke.")


class SellerGrant(RequestBody):
    customer_id: Id
    product_id: Id
    reason: Text = Field(min_length=1, max_length=2000, description="Your words; kept in the ledger as the note "
                                                                   "(the entry's reason is `granted by the seller`).")
    expires_at: Moment | None = Field(default=None, description="When this access ends; empty: for good.")
    email: Text | None = Field(default=None, max_length=254,
                               description="The customer's email; needed only for a customer with no purchase here.")
    download_limit: int | None = Field(default=None, ge=1, le=100_000,
                                       description="For a download product: this grant's own limit.")


class SellerRevocation(RequestBody):
    customer_id: Id
    product_id: Id
    reason: Text = Field(min_length=1, max_length=2000, description="Your words; kept in the ledger as the note "
                                                                   "(the entry's reason is `revoked by the seller`).")
    expires_at: Moment | None = Field(default=None, description="When access ends; empty: now.")


class RevocationOut(BaseModel):
    customer_id: str
    product_id: str
    available: bool = Field(description="Whether the customer may still use the product now (until `expires_at`).")
    until: datetime | None
    grants: list[GrantOut] = Field(description="Every grant of the product, as it stands after the revoke.")


class GrantChange(RequestBody):
    download_limit: int | None = Field(ge=1, le=100_000, description="This grant's own download limit; null: the "
                                                                     "product's.")


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


def _settings_or_422(body: DeliverySettingsIn, delivery_type: str) -> dict | None:
    try:
        return body.settings_for(delivery_type)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@admin.post("/products", status_code=201, response_model=ProductOut)
def create_product(body: NewProduct, session: SessionDep) -> ProductOut:
    """A product, delivered as `delivery_type` with that type's settings (an integration's signing
    secret is made when not given). Published as `ProductPublished`."""
    try:
        product = products.create_product(session, name=body.name, description=body.description,
                                          delivery_type=body.delivery_type,
                                          settings=_settings_or_422(body, body.delivery_type))
    except ValidationError as exc:  # e.g. an endpoint that may not be called
        raise HTTPException(status_code=422, detail=str(exc)) from None
    session.commit()
    return ProductOut.of(product)


@admin.get("/products/{product_id}", response_model=ProductOut)
def get_product(product_id: str, session: SessionDep) -> ProductOut:
    product = session.get(Product, product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"unknown product {product_id}")
    return ProductOut.of(product)


@admin.put("/products/{product_id}/delivery", response_model=ProductOut)
def configure_delivery(product_id: str, body: DeliverySettingsIn, session: SessionDep) -> ProductOut:
    """Replaces the product's delivery settings; what is left out takes its default. Deliveries
    still waiting for a retry are tried again at once with the new settings."""
    product = session.get(Product, product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"unknown product {product_id}")
    try:
        product = products.configure_delivery(session, product_id, _settings_or_422(body, product.delivery_type))
    except ValidationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    products.retry_deliveries(session, product_id)
    session.commit()
    return ProductOut.of(product)


@admin.get("/access", response_model=AccessOut)
def check_access(customer_id: str, product_id: str, session: SessionDep) -> AccessOut:
    """Whether a customer may use a product now, and the (oldest) grant that says so."""
    grant = access_views.check_access(session, customer_id, product_id)
    if grant is None:
        return AccessOut(customer_id=customer_id, product_id=product_id, has_access=False)
    return AccessOut(customer_id=customer_id, product_id=product_id, has_access=True, grant_id=grant.id,
                     reason=access_views.why_granted(grant), granted_at=grant.granted_at)


@admin.get("/access/customers/{customer_id}", response_model=CustomerAccessOut)
def customer_access(customer_id: str, session: SessionDep) -> CustomerAccessOut:
    """Each product the customer has or had: whether it is available now, why (the grants that
    give it, and their sources) or why not (the newest revoke's or suspension's reason)."""
    products = access_views.customer_access(session, customer_id)
    return CustomerAccessOut(customer_id=customer_id, email=access_views.customer_email(session, customer_id), products=[
        ProductAccessOut(product_id=p.product_id, product_name=p.name, available=p.available, until=p.until,
                         active_grants=[GrantOut.of(g) for g in p.active],
                         unavailable_because=p.unavailable_because, unavailable_since=p.unavailable_since,
                         grants=[GrantOut.of(g) for g in p.grants])
        for p in products])


@admin.post("/access/customers/{customer_id}/grants", status_code=201, response_model=GrantOut)
def grant_access(customer_id: str, body: NewGrant, session: SessionDep) -> GrantOut:
    """Gives the customer a product by hand, for good or for `days`; billing is not touched.
    Published as `AccessGranted` (actor `seller`, reason `granted by the seller`)."""
    email = None
    if body.email is not None:
        email = normalize_email(body.email)
        if email is None:
            raise HTTPException(status_code=422, detail="email: not an email address")
    try:
        grant = grants.grant_by_seller(session, customer_id=customer_id, product_id=body.product_id,
                                         days=body.days, note=body.note, email=email)
    except products.UnknownProduct:
        raise HTTPException(status_code=404, detail=f"unknown product {body.product_id}") from None
    except (grants.EmailNeeded, grants.EmailMismatch) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    session.commit()
    return GrantOut.of(grant)


@admin.post("/access/customers/{customer_id}/grants/{grant_id}/revoke", response_model=GrantOut)
def revoke_access(customer_id: str, grant_id: str, session: SessionDep, body: Revocation | None = None) -> GrantOut:
    """Takes one grant back by hand (a purchase's or the seller's own); billing is not touched, and
    the customer's other grants of the product stay. Published as `AccessRevoked` (actor `seller`,
    reason `revoked by the seller`). Revoking again changes nothing."""
    try:
        grant = grants.revoke_by_seller(session, customer_id=customer_id, grant_id=grant_id,
                                          note=body.note if body else None)
    except grants.UnknownGrant:
        raise HTTPException(status_code=404, detail=f"customer {customer_id} has no grant {grant_id}") from None
    session.commit()
    return GrantOut.of(grant)


@admin.post("/grants", status_code=201, response_model=GrantOut)
def grant(body: SellerGrant, session: SessionDep) -> GrantOut:
    """The seller's manual grant: gives the customer a product, for good or until `expires_at`;
    billing is not touched. Published as `AccessGranted` (actor `seller`, reason `granted by the
    seller`, your `reason` as the note)."""
    email = None
    if body.email is not None:
        email = normalize_email(body.email)
        if email is None:
            raise HTTPException(status_code=422, detail="email: not an email address")
    try:
        made = grants.grant_by_seller(session, customer_id=body.customer_id, product_id=body.product_id,
                                        expires_at=body.expires_at, note=body.reason, email=email,
                                        download_limit=body.download_limit)
    except products.UnknownProduct:
        raise HTTPException(status_code=404, detail=f"unknown product {body.product_id}") from None
    except (grants.EmailNeeded, grants.EmailMismatch, grants.EndInThePast) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    session.commit()
    return GrantOut.of(made)


@admin.post("/revocations", response_model=RevocationOut)
def revoke(body: SellerRevocation, session: SessionDep) -> RevocationOut:
    """The seller's manual revoke: takes the product back from the customer, now or as of
    `expires_at`, whatever grants gave it; billing is not touched (refund or cancel in checkout).
    Published as `AccessRevoked` (actor `seller`, reason `revoked by the seller`, your `reason` as
    the note). Revoking again changes nothing."""
    try:
        revoked = grants.revoke_product_by_seller(session, customer_id=body.customer_id,
                                                  product_id=body.product_id, note=body.reason,
                                                  effective_at=body.expires_at)
    except grants.UnknownGrant:
        raise HTTPException(status_code=404,
                            detail=f"customer {body.customer_id} has no grant of {body.product_id}") from None
    session.commit()
    now = utcnow()
    state = next((p for p in access_views.customer_access(session, body.customer_id, now)
                  if p.product_id == body.product_id), None)
    return RevocationOut(customer_id=body.customer_id, product_id=body.product_id,
                         available=bool(state and state.available), until=state.until if state else None,
                         grants=[GrantOut.of(g) for g in revoked])


@admin.patch("/access/customers/{customer_id}/grants/{grant_id}", response_model=GrantOut)
def change_grant(customer_id: str, grant_id: str, body: GrantChange, session: SessionDep) -> GrantOut:
    """Gives one grant a download limit of its own, or (null) the product's again."""
    try:
        changed = grants.set_download_limit(session, customer_id=customer_id, grant_id=grant_id,
                                              download_limit=body.download_limit)
    except grants.UnknownGrant:
        raise HTTPException(status_code=404, detail=f"customer {customer_id} has no grant {grant_id}") from None
    session.commit()
    return GrantOut.of(changed)


@admin.get("/access/customers/{customer_id}/ledger", response_model=list[LedgerEntryOut])
def access_ledger(customer_id: str, session: SessionDep) -> list[LedgerEntryOut]:
    """Every grant, revoke, suspension, restoration and expiry of a customer, in order: who or
    what, when, why, and the event that caused it."""
    return [LedgerEntryOut.model_validate(e, from_attributes=True) for e in access_views.ledger(session, customer_id)]
