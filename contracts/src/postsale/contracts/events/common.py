"""What several topics' events share: delivery kinds, actors, the purchased product, the access policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from postsale.contracts.base import Contract


DeliveryType = Literal["membership", "integration", "download", "none"]
DeliveryKind = Literal["membership", "integration", "download", "license_key", "none"]
# Each kind in the words a seller or buyer reads wherever a product is shown: `none` is what the
# seller fulfils (goods, a service, a booking, a registration).
DELIVERY_KIND_WORDS: dict[str, str] = {"membership": "hosted membership", "integration": "third-party membership",
                                       "download": "download", "license_key": "license key", "none": "fulfilled by you"}
# Kinds added after contracts 1.0, as a 1.0 reader (which knows only `DeliveryType`) sees them.
_NEAREST_1_0_KIND = {"license_key": "download"}
KIND_DESCRIPTION = ("How the product is delivered, including kinds added after contracts 1.0 (`license_key`); "
                    "empty from a 1.0 publisher: read `delivery_type`.")


def delivery_fields(kind: str) -> dict[str, str]:
    """`delivery_type` (the nearest kind every 1.x reader knows) and `delivery_kind` (the exact one)."""
    return {"delivery_type": _NEAREST_1_0_KIND.get(kind, kind), "delivery_kind": kind}


def delivery_kind_of(item: Contract) -> str:
    """The exact delivery kind of an event or item that has `delivery_type`, from a publisher of any 1.x version."""
    return item.delivery_kind or item.delivery_type
Actor = Literal["customer", "seller", "system", "provider"]
PaymentKind = Literal["renewal", "instalment"]
BillingKind = Literal["subscription", "payment_plan"]


class PurchasedProduct(Contract):
    product_id: str
    name: str
    delivery_type: DeliveryType
    delivery_kind: DeliveryKind | None = Field(default=None, description=KIND_DESCRIPTION)


class AccessPolicy(Contract):
    """How access follows billing for a purchase: the offer's policy, Postsale's defaults unless
    the seller changed them. Entitlements applies it, whatever the payment provider."""

    access_days: int | None = Field(
        default=None, ge=1, le=36500,
        description="Access lasts this many days from the purchase, then expires; empty: for good (while the "
                    "billing lasts, for a subscription or payment plan).")
    on_cancel: Literal["period_end", "now"] = Field(
        default="period_end",
        description="A cancelled subscription keeps access to the end of its paid period, or loses it as soon as "
                    "the cancellation is asked for.")
    on_pause: Literal["keep", "suspend"] = Field(default="keep", description="Access while billing is paused.")
    on_partial_refund: Literal["keep", "revoke"] = Field(default="keep", description="A full refund always revokes.")
