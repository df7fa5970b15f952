from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry


class Base(SQLModel, registry=table_registry()):
    """The entitlements service's tables, made by its migrations (`postsale/entitlements/migrations/`)."""


class Product(Base, table=True):
    __tablename__ = "products"

    id: str = Field(primary_key=True)
    name: str
    description: str = ""
    delivery_type: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AccessEntry(Base, table=True):
    """One grant or revoke, with why, who and which event caused it."""

    __tablename__ = "access_ledger"
    __table_args__ = (
        # One entry per cause: a redelivered or replayed event can never grant twice.
        UniqueConstraint("customer_id", "product_id", "action", "cause_event_id"),
        # One grant per product of a purchase, even when the purchase arrives again as a new event.
        Index("uq_access_ledger_purchase_grant", "purchase_id", "product_id", unique=True,
              sqlite_where=text("action = 'grant'"), postgresql_where=text("action = 'grant'")),
    )

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    email: str
    product_id: str = Field(index=True)
    action: str  # grant | revoke
    reason: str
    actor: str
    cause_event_id: str | None = None
    purchase_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
