"""The seller's products and their delivery settings. Each runs inside the caller's transaction
and never commits."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from postsale.contracts import ProductPublished, delivery_fields
from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.changes import SOURCE, new_id
from postsale.entitlements.delivery import strategy_for
from postsale.entitlements.delivery.runner import retry_waiting
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging import publish_later


class UnknownProduct(LookupError):
    pass


def delivery_settings(delivery_type: str, settings: dict | None) -> dict:
    """The settings of a product of `delivery_type`, checked and completed by its strategy (for
    instance a signing secret made for an integration); raises pydantic's ValidationError."""
    strategy = strategy_for(delivery_type)
    return strategy.configure(strategy.settings_model.model_validate(settings or {})).model_dump(mode="json")


def create_product(session: Session, *, name: str, delivery_type: str, description: str = "",
                   settings: dict | None = None) -> Product:
    """Creates a product with its delivery settings and publishes `ProductPublished`."""
    product = Product(id=new_id("prod"), name=name, description=description, delivery_type=delivery_type,
                      delivery_settings=delivery_settings(delivery_type, settings))
    session.add(product)
    publish_later(
        session,
        ProductPublished(product_id=product.id, name=name, description=description,
                         **delivery_fields(delivery_type), published_at=product.created_at),
        source=SOURCE,
    )
    return product


def configure_delivery(session: Session, product_id: str, settings: dict | None) -> Product:
    """Replaces a product's delivery settings (what is left out takes its default). Deliveries
    already made stay as they were; waiting ones use the new settings at their next attempt."""
    product = session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise UnknownProduct(product_id)
    product.delivery_settings = delivery_settings(product.delivery_type, settings)
    product.updated_at = utcnow()
    session.add(product)
    return product


def retry_deliveries(session: Session, product_id: str, now: datetime | None = None) -> int:
    """The product's deliveries waiting for a retry are tried at once (the seller fixed what made
    them fail: uploaded the file, set the endpoint). Returns how many."""
    return retry_waiting(session, product_id, now or utcnow())
