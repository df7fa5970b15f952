"""`none`: delivered outside Postsale (goods, a service, a booking, a webinar seat).

When a purchase grants it, `FulfilmentRequested` is published with what the external system needs:
the kind and the seller's details from the product's settings, the customer, the purchase, and the
shipping address when checkout has one (it does not ask for one yet, so it is empty). A manual
grant has no purchase to fulfil, and access coming back after a suspension is not a new order:
neither requests anything. The end of access is told by `AccessRevoked`, as for every type.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from postsale.contracts import FulfilmentRequested
from postsale.entitlements.adapters.tables import Delivery
from postsale.entitlements.config import SERVICE
from postsale.entitlements.delivery.base import BaseStrategy, DeliveryContext, Result, product_settings
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


class FulfilmentSettings(BaseModel):
    kind: Literal["goods", "service", "booking", "webinar"] = Field(
        default="service", description="What the external system fulfils.")
    details: dict[str, str] = Field(default_factory=dict, max_length=50,
                                    description="Passed on as they are, e.g. the webinar session or the SKU.")

    @field_validator("details")
    @classmethod
    def _storable(cls, value: dict[str, str]) -> dict[str, str]:
        if any("\x00" in k or "\x00" in v or len(k) > 100 or len(v) > 1000 for k, v in value.items()):
            raise ValueError("names up to 100 and values up to 1000 characters, without NUL")
        return value


class FulfilmentStrategy(BaseStrategy):
    delivery_type = "none"
    settings_model = FulfilmentSettings

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        if delivery.ledger_action != "grant":
            return Result("skipped", "fulfilment was requested when access was first granted")
        if delivery.purchase_id is None:
            return Result("skipped", "a manual grant has no purchase to fulfil")
        product = ctx.product(delivery)
        grant = ctx.grant(delivery)
        settings = product_settings(product, FulfilmentSettings)
        fulfilment_id = f"ful_{delivery.id.removeprefix('dlv_')}"
        publish_later(ctx.session, FulfilmentRequested(
            fulfilment_id=fulfilment_id, purchase_id=delivery.purchase_id, customer_id=delivery.customer_id,
            email=delivery.email, product_id=delivery.product_id,
            product_name=product.name if product else grant.product_name, kind=settings.kind,
            details=settings.details, shipping_address=None, requested_at=ctx.now,
        ), source=SOURCE)
        return Result("done", f"fulfilment {fulfilment_id} requested ({settings.kind})")

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        return Result("done", "AccessRevoked tells the fulfilling system")
