from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry


class Base(SQLModel, registry=table_registry()):
    """The checkout service's tables, made by its migrations (`postsale/checkout/migrations/`)."""


class CatalogProduct(Base, table=True):
    """Read model of entitlements' products, from `entitlements.products.v1`."""

    __tablename__ = "catalog_products"

    id: str = Field(primary_key=True)
    name: str
    description: str = ""
    delivery_type: str
    updated_at: datetime = Field(default_factory=utcnow)


class Customer(Base, table=True):
    """Who bought here, and whether accounts says they have an account they can log in to."""

    __tablename__ = "customers"

    email: str = Field(primary_key=True)
    customer_id: str = Field(unique=True)
    has_account: bool = False


class Offer(Base, table=True):
    __tablename__ = "offers"

    id: str = Field(primary_key=True)
    name: str
    price_amount: int
    currency: str
    product_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    send_confirmation_email: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class CheckoutSession(Base, table=True):
    """One purchase attempt. Its id is the idempotency key of every charge it makes."""

    __tablename__ = "checkout_sessions"

    id: str = Field(primary_key=True)
    offer_id: str = Field(foreign_key="offers.id")
    email: str
    status: str = "open"  # open | paid
    provider: str | None = None
    provider_payment_id: str | None = Field(default=None, index=True)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Purchase(Base, table=True):
    __tablename__ = "purchases"

    id: str = Field(primary_key=True)
    # One purchase per attempt, whatever retries, double clicks or repeated webhooks do.
    checkout_session_id: str = Field(unique=True, foreign_key="checkout_sessions.id")
    customer_id: str = Field(index=True)
    email: str
    offer_id: str
    amount: int
    currency: str
    provider: str
    provider_payment_id: str
    completed_at: datetime = Field(default_factory=utcnow)


class ProviderEvent(Base, table=True):
    """Every webhook accepted from a payment provider, once."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    external_id: str
    type: str
    received_at: datetime = Field(default_factory=utcnow)
