"""The seller's products and their delivery settings. Each runs inside the caller's transaction
and never commits."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, func, select

from postsale.contracts import ProductArchived, ProductPublished, ProductUpdated, delivery_fields
from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.changes import SOURCE, new_id
from postsale.entitlements.delivery import strategy_for
from postsale.entitlements.delivery.runner import retry_waiting
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging import publish_later


PAGE_SIZE = 50


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


def list_products(session: Session, page: int = 1, size: int = PAGE_SIZE) -> tuple[list[Product], int]:
    """One page of the products, active ones first, newest first; and how many there are."""
    total = session.exec(select(func.count()).select_from(Product)).one()
    rows = session.exec(select(Product).order_by(Product.archived_at.is_not(None),  # type: ignore[union-attr]
                                                 Product.created_at.desc(), Product.id)  # type: ignore[attr-defined]
                        .offset((page - 1) * size).limit(size)).all()
    return list(rows), total


def _locked(session: Session, product_id: str) -> Product:
    product = session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise UnknownProduct(product_id)
    return product


def _publish_state(session: Session, product: Product, now: datetime) -> None:
    # The whole state: the topic is compacted, so this may be all a new reader ever sees of it.
    publish_later(session, ProductUpdated(product_id=product.id, name=product.name, description=product.description,
                                          **delivery_fields(product.delivery_type), updated_at=now), source=SOURCE)


def update_product(session: Session, product_id: str, *, name: str, description: str,
                   now: datetime | None = None) -> Product:
    """Renames or redescribes a product and publishes `ProductUpdated` (an archived one's new state
    goes out when it is unarchived); nothing changes when both are as they were."""
    product = _locked(session, product_id)
    if (product.name, product.description) == (name, description):
        return product
    now = now or utcnow()
    product.name, product.description, product.updated_at = name, description, now
    session.add(product)
    if product.archived_at is None:  # an archived product stays out of readers' catalogues until unarchived
        _publish_state(session, product, now)
    return product


def archive_product(session: Session, product_id: str, now: datetime | None = None) -> Product:
    """Takes a product out of what offers may grant (`ProductArchived`). Customers who have it keep
    it: no access changes, deliveries and the library go on. Archiving again changes nothing."""
    product = _locked(session, product_id)
    if product.archived_at is not None:
        return product
    now = now or utcnow()
    product.archived_at = product.updated_at = now
    session.add(product)
    publish_later(session, ProductArchived(product_id=product.id, archived_at=now), source=SOURCE)
    return product


def unarchive_product(session: Session, product_id: str, now: datetime | None = None) -> Product:
    """Puts an archived product back among those offers may grant, publishing its whole state
    (`ProductUpdated`). An active product is left as it is."""
    product = _locked(session, product_id)
    if product.archived_at is None:
        return product
    now = now or utcnow()
    product.archived_at, product.updated_at = None, now
    session.add(product)
    _publish_state(session, product, now)
    return product
