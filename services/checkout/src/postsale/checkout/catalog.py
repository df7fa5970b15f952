"""Checkout's catalogue: a read model of entitlements' products (`entitlements.products.v1`), so
an offer can name the products it sells and say how each is delivered, without asking entitlements.
"""

from __future__ import annotations

from sqlmodel import Session

from postsale.checkout.adapters.tables import CatalogProduct
from postsale.contracts import ProductArchived, ProductPublished, ProductUpdated, delivery_kind_of
from postsale.runtime.clock import utcnow


def update_catalog(session: Session, event: ProductPublished | ProductUpdated, _event_id: str) -> None:
    """Started by `ProductPublished` and `ProductUpdated` (which entitlements also sends when a
    product is brought back from the archive): keeps the catalog read model current."""
    product = session.get(CatalogProduct, event.product_id) or CatalogProduct(id=event.product_id, name="", delivery_type="")
    product.name = event.name
    product.description = event.description
    product.delivery_type = delivery_kind_of(event)
    product.archived_at = None
    product.updated_at = utcnow()
    session.add(product)


def archive_in_catalog(session: Session, event: ProductArchived, _event_id: str) -> None:
    """Started by `ProductArchived`: offers that have the product keep it; no new offer takes it."""
    product = session.get(CatalogProduct, event.product_id)
    if product is not None:
        product.archived_at = event.archived_at
        session.add(product)
