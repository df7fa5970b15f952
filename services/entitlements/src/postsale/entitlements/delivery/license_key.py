"""`license_key`: a key per grant, for software the customer activates.

When access is granted, the grant gets a key (with the product's activation limit and, when the
product says so, an expiry N days after the grant); the library shows it, and `LicenseKeyIssued`
(on the restricted topic) carries it to the email that delivers it. The key works while its
grant is active: it is on hold while access is suspended, and revoked with access (a refund, a
lost dispute, the seller). The public API (`entrypoints/licenses.py`) validates, activates and
deactivates keys with the use cases below.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, select

from postsale.contracts import LicenseKeyIssued
from postsale.entitlements.adapters.tables import Delivery, Grant, LicenseActivation, LicenseKey
from postsale.entitlements.config import SERVICE
from postsale.entitlements.delivery.base import BaseStrategy, DeliveryContext, Result, product_settings
from postsale.entitlements.domain.access import GrantView, is_active
from postsale.entitlements.domain.licenses import LicenseStatus, license_status, new_key, normalize_key
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


class LicenseKeySettings(BaseModel):
    activation_limit: int | None = Field(default=None, ge=1, le=10_000,
                                         description="Devices or installs a key may be active on; empty: no limit.")
    expires_days: int | None = Field(default=None, ge=1, le=36_500,
                                     description="A key stops working this many days after the grant; empty: never "
                                                 "(while access lasts).")
    prefix: str = Field(default="", max_length=8, pattern="^[A-Z0-9]*$",
                        description="Letters or digits put before each key, e.g. `MYAPP`.")


class LicenseKeyStrategy(BaseStrategy):
    delivery_type = "license_key"
    settings_model = LicenseKeySettings

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        key = key_of(ctx.session, delivery.grant_id)
        if key is not None:
            key.revoked_at = None
            ctx.session.add(key)
            return Result("done", "the key works again")
        grant = ctx.grant(delivery)
        product = ctx.product(delivery)
        settings = product_settings(product, LicenseKeySettings)
        granted_at = as_utc(grant.granted_at)
        key = LicenseKey(
            id=f"lic_{uuid.uuid4().hex[:16]}", key=new_key(settings.prefix), grant_id=grant.id,
            customer_id=grant.customer_id, product_id=grant.product_id, activation_limit=settings.activation_limit,
            expires_at=granted_at + timedelta(days=settings.expires_days) if settings.expires_days else None,
            created_at=ctx.now)
        ctx.session.add(key)
        # For the email that delivers it; once per key, since a grant gets one key (see above).
        publish_later(ctx.session, LicenseKeyIssued(
            license_id=key.id, customer_id=grant.customer_id, email=delivery.email, product_id=grant.product_id,
            product_name=product.name if product else grant.product_name, license_key=key.key,
            max_activations=key.activation_limit, expires_at=key.expires_at, purchase_id=grant.purchase_id,
            issued_at=ctx.now), source=SOURCE)
        return Result("done", "key issued")

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        key = key_of(ctx.session, delivery.grant_id)
        if key is None:
            return Result("skipped", "no key was issued")
        if delivery.ledger_action == "suspend":
            return Result("done", "the key is on hold")
        key.revoked_at = ctx.now
        ctx.session.add(key)
        return Result("done", "the key is revoked")


def key_of(session: Session, grant_id: str) -> LicenseKey | None:
    return session.exec(select(LicenseKey).where(LicenseKey.grant_id == grant_id)).first()


def keys_of(session: Session, grant_ids: list[str]) -> dict[str, LicenseKey]:
    if not grant_ids:
        return {}
    return {k.grant_id: k for k in session.exec(
        select(LicenseKey).where(LicenseKey.grant_id.in_(grant_ids))).all()}  # type: ignore[attr-defined]


# --- the public API's use cases ------------------------------------------------------------


class LicenseRefused(Exception):
    """A refusal the API answers as `{"error": code, "message": message}` with `http_status`."""

    def __init__(self, code: str, message: str, http_status: int, license: "LicenseView | None" = None) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status, self.license = code, message, http_status, license


@dataclass(frozen=True)
class LicenseView:
    key: str
    status: LicenseStatus
    product_id: str
    customer_id: str
    activations: int
    activation_limit: int | None
    expires_at: datetime | None

    @property
    def valid(self) -> bool:
        return self.status == "active"


_WHY = {"suspended": "access to this product is on hold", "revoked": "access to this product has ended",
        "expired": "this license key has expired"}


def _load(session: Session, raw_key: str, *, lock: bool = False) -> tuple[LicenseKey, Grant]:
    key = normalize_key(raw_key)
    query = select(LicenseKey).where(LicenseKey.key == key)
    row = session.exec(query.with_for_update() if lock else query).first() if key else None
    grant = session.get(Grant, row.grant_id) if row is not None else None
    if row is None or grant is None:
        raise LicenseRefused("not_found", "no such license key", 404)
    return row, grant


def _active_activations(session: Session, key_id: str) -> int:
    return session.exec(select(func.count()).select_from(LicenseActivation).where(
        LicenseActivation.license_key_id == key_id, LicenseActivation.deactivated_at.is_(None))).one()  # type: ignore[union-attr]


def _view(session: Session, key: LicenseKey, grant: Grant, now: datetime) -> LicenseView:
    active = is_active(GrantView(grant.id, grant.product_id, grant.status, as_utc(grant.ends_at)), now)  # type: ignore[arg-type]
    return LicenseView(key=key.key, status=license_status(grant.status, active, as_utc(key.expires_at), now),
                       product_id=key.product_id, customer_id=key.customer_id,
                       activations=_active_activations(session, key.id), activation_limit=key.activation_limit,
                       expires_at=as_utc(key.expires_at))


def _activation(session: Session, key: LicenseKey, activation_id: str) -> LicenseActivation | None:
    activation = session.get(LicenseActivation, activation_id)
    if activation is None or activation.license_key_id != key.id or activation.deactivated_at is not None:
        return None
    return activation


def validate(session: Session, raw_key: str, now: datetime, *, activation_id: str | None = None,
             product_id: str | None = None) -> LicenseView:
    """Whether a key works now (and, given one, whether that activation of it is still on)."""
    key, grant = _load(session, raw_key)
    view = _view(session, key, grant, now)
    if product_id is not None and product_id != key.product_id:
        raise LicenseRefused("wrong_product", "this license key is for another product", 422, view)
    if activation_id is not None and _activation(session, key, activation_id) is None:
        raise LicenseRefused("activation_not_found", "this key is not activated under that id", 404, view)
    return view


def activate(session: Session, raw_key: str, label: str, now: datetime) -> tuple[LicenseActivation, LicenseView]:
    """Activates a working key on one more device or install (`label`), up to its limit. Activating
    the same label again returns its activation. Runs inside the caller's transaction."""
    key, grant = _load(session, raw_key, lock=True)  # counts one activation of a key at a time
    view = _view(session, key, grant, now)
    if not view.valid:
        raise LicenseRefused(view.status, _WHY[view.status], 403, view)
    existing = session.exec(select(LicenseActivation).where(
        LicenseActivation.license_key_id == key.id, LicenseActivation.label == label,
        LicenseActivation.deactivated_at.is_(None))).first()  # type: ignore[union-attr]
    if existing is not None:
        return existing, view
    if key.activation_limit is not None and view.activations >= key.activation_limit:
        raise LicenseRefused("activation_limit_reached",
                             f"this key is active on {view.activations} of {key.activation_limit} allowed; "
                             "deactivate one first", 409, view)
    activation = LicenseActivation(id=f"act_{uuid.uuid4().hex[:16]}", license_key_id=key.id, label=label,
                                   created_at=now)
    session.add(activation)
    session.flush()
    return activation, _view(session, key, grant, now)


def deactivate(session: Session, raw_key: str, activation_id: str, now: datetime) -> LicenseView:
    """Frees one activation (whatever the key's status, so a seat can always be given back)."""
    key, grant = _load(session, raw_key, lock=True)
    activation = _activation(session, key, activation_id)
    if activation is None:
        raise LicenseRefused("activation_not_found", "this key is not activated under that id", 404,
                             _view(session, key, grant, now))
    activation.deactivated_at = now
    session.add(activation)
    session.flush()
    return _view(session, key, grant, now)
