"""Entitlements use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

import uuid
from sqlmodel import Session, select

from postsale.contracts import AccessGranted, ProductPublished, PurchaseCompleted
from postsale.entitlements.adapters.tables import AccessEntry, Product
from postsale.entitlements.config import SERVICE
from postsale.entitlements.domain.access import LedgerEntry, current_grants
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


def create_product(session: Session, *, name: str, delivery_type: str, description: str = "") -> Product:
    """Creates a product and publishes `ProductPublished`."""
    product = Product(id=f"prod_{uuid.uuid4().hex[:16]}", name=name, description=description,
                      delivery_type=delivery_type)
    session.add(product)
    publish_later(
        session,
        ProductPublished(product_id=product.id, name=name, description=description,
                         delivery_type=delivery_type, published_at=product.created_at),
        source=SOURCE,
    )
    return product


def grant_access_for_purchase(session: Session, event: PurchaseCompleted, event_id: str) -> list[AccessEntry]:
    """Started by `PurchaseCompleted`: a ledger grant per product, each published as `AccessGranted`."""
    entries = []
    already_granted = set(session.exec(
        select(AccessEntry.product_id).where(AccessEntry.purchase_id == event.purchase_id, AccessEntry.action == "grant")
    ).all())
    for item in event.products:
        if item.product_id in already_granted:
            # The same purchase published again. The partial unique index guarantees this even
            # under a race (the insert fails and the retry finds the grant); reading first keeps
            # the common case free of an exception.
            continue
        entry = AccessEntry(
            id=f"grant_{uuid.uuid4().hex[:16]}",
            customer_id=event.customer_id,
            email=event.email,
            product_id=item.product_id,
            action="grant",
            reason="purchase",
            actor="customer",
            cause_event_id=event_id,
            purchase_id=event.purchase_id,
        )
        session.add(entry)
        publish_later(
            session,
            AccessGranted(
                entry_id=entry.id, customer_id=entry.customer_id, email=entry.email,
                product_id=item.product_id, product_name=item.name, delivery_type=item.delivery_type,
                reason=entry.reason, actor="customer", cause_event_id=event_id, cause_event_type=event.event_type,
                purchase_id=event.purchase_id, granted_at=entry.created_at,
            ),
            source=SOURCE,
        )
        entries.append(entry)
    return entries


def ledger(session: Session, customer_id: str) -> list[AccessEntry]:
    return list(session.exec(
        select(AccessEntry).where(AccessEntry.customer_id == customer_id).order_by(AccessEntry.created_at)
    ).all())


def _current_grants(session: Session, customer_id: str) -> dict[str, AccessEntry]:
    entries = ledger(session, customer_id)
    by_id = {entry.id: entry for entry in entries}
    grants = current_grants(
        (LedgerEntry(e.id, e.product_id, e.action, as_utc(e.created_at), as_utc(e.expires_at)) for e in entries),
        utcnow(),
    )
    return {product_id: by_id[grant.entry_id] for product_id, grant in grants.items()}


def library(session: Session, customer_id: str) -> list[tuple[Product, AccessEntry]]:
    """The products a customer may use now, each with the grant that gave it, newest first."""
    grants = _current_grants(session, customer_id)
    products = session.exec(select(Product).where(Product.id.in_(grants))).all()  # type: ignore[attr-defined]
    return sorted(((product, grants[product.id]) for product in products),
                  key=lambda item: as_utc(item[1].created_at), reverse=True)


def check_access(session: Session, customer_id: str, product_id: str) -> AccessEntry | None:
    """The grant that gives the customer the product now, or None."""
    return _current_grants(session, customer_id).get(product_id)
