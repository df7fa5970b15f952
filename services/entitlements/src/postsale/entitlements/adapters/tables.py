from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry
from postsale.runtime.scheduler import DueRow, pending_index


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


class Customer(Base, table=True):
    """A customer entitlements knows (from a purchase, a billing event or a seller's grant).

    Every change to a customer's access starts by locking this row, so the changes of one
    customer happen one after another and their ledger entries are numbered without gaps."""

    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    email: str
    ledger_seq: int = 0  # the number of the customer's newest ledger entry
    updated_at: datetime = Field(default_factory=utcnow)


class Purchase(Base, table=True):
    """A purchase entitlements has seen, with the access policy it was sold under."""

    __tablename__ = "purchases"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    email: str
    offer_id: str = ""
    offer_name: str = ""
    order_id: str | None = None
    parent_purchase_id: str | None = None
    subscription_id: str | None = Field(default=None, index=True)  # the billing it started: its grants are ours
    access_days: int | None = None
    on_cancel: str = "period_end"  # period_end | now
    on_pause: str = "keep"  # keep | suspend
    on_partial_refund: str = "keep"  # keep | revoke
    completed_at: datetime
    event_id: str | None = None  # the PurchaseCompleted that told us


class Grant(Base, table=True):
    """Current access: one product from one source (a purchase, or the seller), as it stands now.

    Changed only together with the ledger entry that explains the change; the library and the
    access check read this table, never the ledger."""

    __tablename__ = "access_grants"
    __table_args__ = (
        UniqueConstraint("purchase_id", "product_id"),
        Index("ix_access_grants_customer_product", "customer_id", "product_id"),
    )

    id: str = Field(primary_key=True)
    customer_id: str
    product_id: str
    product_name: str  # as it was when granted, for a product entitlements does not list
    delivery_type: str
    source: str  # purchase | seller
    purchase_id: str | None = None
    status: str  # active | suspended | revoked | expired
    reason: str  # of the newest change: "purchase", "granted by the seller", "full refund", ...
    granted_at: datetime
    expires_at: datetime | None = None  # the end of an access period of N days
    ends_at: datetime | None = None  # when access ends by itself (expiry, a billing's end); None: it will not
    ends_because: str | None = None  # why it will: "access period ended", "subscription cancelled"
    changed_at: datetime
    last_seq: int  # the ledger entry of the newest change
    cause_event_id: str | None = None  # what granted it
    cause_event_type: str | None = None
    note: str | None = None  # the seller's, for a manual grant


class AccessFact(Base, table=True):
    """What happened to a grant's source, as its event told it: a refund, a dispute, the billing's
    cancellation or pause, or a revoke by the seller. The access policy is applied to these."""

    __tablename__ = "access_facts"

    id: str = Field(primary_key=True)
    purchase_id: str | None = Field(default=None, index=True)  # a fact about a purchase and its billing
    grant_id: str | None = Field(default=None, index=True)  # or about one grant (a seller's revoke)
    kind: str
    key: str = ""  # the dispute it is about
    occurred_at: datetime
    effective_at: datetime | None = None
    detail: str | None = None
    actor: str
    actor_id: str | None = None
    note: str | None = None
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    recorded_at: datetime = Field(default_factory=utcnow)


class AccessReview(DueRow, Base, table=True):
    """A moment a grant's access may end by itself (its period's end, a billing's end): the
    scheduler applies the policy to it again then."""

    __tablename__ = "access_reviews"
    __table_args__ = (pending_index("access_reviews"),)

    grant_id: str = Field(index=True)


class AccessEntry(Base, table=True):
    """One change of a grant: grant, revoke, suspend, restore or expire, with why, who and which
    event caused it. `seq` orders a customer's entries, even two made at the same instant."""

    __tablename__ = "access_ledger"
    __table_args__ = (
        # One entry per cause: a redelivered or replayed event can never grant twice.
        UniqueConstraint("customer_id", "product_id", "action", "cause_event_id"),
        UniqueConstraint("customer_id", "seq"),
        # One grant per product of a purchase, even when the purchase arrives again as a new event.
        Index("uq_access_ledger_purchase_grant", "purchase_id", "product_id", unique=True,
              sqlite_where=text("action = 'grant'"), postgresql_where=text("action = 'grant'")),
    )

    id: str = Field(primary_key=True)
    seq: int
    customer_id: str = Field(index=True)
    email: str
    product_id: str = Field(index=True)
    grant_id: str | None = Field(default=None, index=True)
    action: str  # grant | revoke | suspend | restore | expire
    reason: str
    actor: str  # customer | seller | system | provider
    actor_id: str | None = None
    note: str | None = None
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    purchase_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
