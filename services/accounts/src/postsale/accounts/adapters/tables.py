from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry


class Base(SQLModel, registry=table_registry()):
    """The accounts service's tables, made by its migrations (`postsale/accounts/migrations/`)."""


class Customer(Base, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    email: str = Field(unique=True)
    first_name: str = ""
    last_name: str = ""
    password_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None
    last_login_at: datetime | None = None
    # The purchase (and its order) that made this record: its upsells and the other purchases
    # of its order come from the same buyer, the only one who may set the account up at checkout.
    first_purchase_id: str | None = None
    first_order_id: str | None = None


class SetupToken(Base, table=True):
    """A single-use account setup token; only its SHA-256 is stored. Either checkout's, held by the
    buyer's browser, or one accounts made and emailed."""

    __tablename__ = "setup_tokens"

    token_sha256: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    purchase_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    # Where the customer goes once the account is set up, from the purchase; empty: the library.
    after_setup_url: str | None = None
    # A browser token of an email that already had a customer record: it cannot set it up.
    email_proof_required: bool = False


class PendingActivation(Base, table=True):
    """Name and password chosen on checkout's payment page whose purchase has not reached accounts
    yet, keyed by the browser's setup token; applied when the purchase arrives."""

    __tablename__ = "pending_activations"

    token_sha256: str = Field(primary_key=True)
    first_name: str
    last_name: str
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    applied_at: datetime | None = None
    # The browser holding the token is signed in once, after the activation was applied.
    signed_in_at: datetime | None = None


class LoginSession(Base, table=True):
    __tablename__ = "login_sessions"

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None
