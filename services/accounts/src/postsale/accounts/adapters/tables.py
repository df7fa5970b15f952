from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from postsale.runtime.activity import ActivityPublication
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
    # `purchase`, or `seller` for a customer the seller added by hand (who gets the welcome email).
    source: str = Field(default="purchase", sa_column_kwargs={"server_default": "purchase"})
    # The offers the seller asked to grant when adding the customer (JSON list), for the record.
    requested_offer_ids: str | None = None


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


class LoginChallenge(Base, table=True):
    """A login by email (purpose `login`) or a password reset (`reset`): a single-use link and a
    one-time code, only their SHA-256 kept. Asking again ends the customer's earlier challenge of
    the same purpose; using either the link or the code uses up both."""

    __tablename__ = "login_challenges"

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    purpose: str  # login | reset
    token_sha256: str = Field(unique=True)
    code_sha256: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    failed_attempts: int = 0
    # Where a login link leads once signed in (one of our pages, checked when asked for).
    next_url: str | None = None


class EmailChange(Base, table=True):
    """A change of login email waiting for its confirmation from the new address."""

    __tablename__ = "email_changes"

    token_sha256: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    new_email: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class Throttle(Base, table=True):
    """Attempts of one subject (an email typed, a client address) in the current window, and until
    when its next attempt is refused."""

    __tablename__ = "throttles"

    key: str = Field(primary_key=True)
    hits: int = 0
    window_started_at: datetime
    blocked_until: datetime | None = None


class AccountEmail(Base, table=True):
    """An account email (setup, login, reset, email change) as notifications reports it on
    `notifications.emails.v1`: handed to the SMTP relay, or given up on."""

    __tablename__ = "account_emails"

    key: str = Field(primary_key=True)  # notifications' email key
    customer_id: str = Field(index=True)
    template: str
    to: str
    status: str  # sent | failed
    happened_at: datetime
    attempts: int | None = None
    error: str | None = None


class ActivityRecord(Base, table=True):
    """When the customer last did each kind of thing (login, library visit, lesson, download)."""

    __tablename__ = "customer_activity"

    customer_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    last_at: datetime
    product_id: str | None = None


class ActivityPublicationRow(ActivityPublication, Base, table=True):
    """When `CustomerActivity` last went out per customer, kind and product: the throttle that holds
    across replicas (`postsale.runtime.activity`)."""

    __tablename__ = "activity_publications"


class StoreTheme(Base, table=True):
    """The seller's theme of the customer pages (one row, `store`), as `PUT /admin/theme` set it."""

    __tablename__ = "themes"

    id: str = Field(primary_key=True)
    settings: str  # JSON of `postsale.runtime.theme.Theme`, unset settings left out
    updated_at: datetime = Field(default_factory=utcnow)
    # When `ThemeChanged` last went out: republished daily, so the topic always holds it.
    published_at: datetime = Field(default_factory=utcnow)


class StaffMember(Base, table=True):
    """A person who runs the store in the back office: the `owner`, or `support` (who may not refund,
    change prices or manage staff)."""

    __tablename__ = "staff_members"

    id: str = Field(primary_key=True)
    email: str = Field(unique=True)
    name: str = ""
    role: str  # owner | support
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    removed_at: datetime | None = None


class StaffLogin(Base, table=True):
    """A staff member's back-office session: its short-lived tokens are renewed while it is open."""

    __tablename__ = "staff_sessions"

    id: str = Field(primary_key=True)
    staff_id: str = Field(foreign_key="staff_members.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class CustomerImport(Base, table=True):
    """A CSV of customers the owner uploaded, checked row by row and kept here between its preview
    and its confirmation (the rows never travel back through the browser); then its report."""

    __tablename__ = "customer_imports"

    id: str = Field(primary_key=True)  # random: the address of the preview and the report
    staff_id: str
    file_name: str = ""
    created_at: datetime = Field(default_factory=utcnow, index=True)
    accepted: str = Field(sa_type=Text)  # JSON list of the rows to import (then: imported, with customer ids)
    rejected: str = Field(sa_type=Text)  # JSON list of the rows refused, each with its reason
    imported_at: datetime | None = None
    imported: int = 0
