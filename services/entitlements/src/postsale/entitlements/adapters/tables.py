from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from postsale.runtime.activity import ActivityPublication
from postsale.runtime.clock import utcnow
from postsale.runtime.db import keep_loaded, table_registry
from postsale.runtime.scheduler import DueRow, pending_index


class Base(SQLModel, registry=table_registry()):
    """The entitlements service's tables, made by its migrations (`postsale/entitlements/migrations/`)."""


class Product(Base, table=True):
    __tablename__ = "products"

    id: str = Field(primary_key=True)
    name: str
    description: str = ""
    delivery_type: str
    # The delivery strategy's settings for this product (`delivery/<type>.py` says which).
    delivery_settings: dict = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Archived: no longer put in new offers; customers who have it keep it. None: active.
    archived_at: datetime | None = None
    # The back-office form's one-time token that created it: a second submission creates nothing.
    submission: str | None = Field(default=None, unique=True)


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


class PurchaseProduct(Base, table=True):
    """A product a purchase bought, as its `PurchaseCompleted` said: what reconciliation compares
    the grants with."""

    __tablename__ = "purchase_products"

    purchase_id: str = Field(primary_key=True)
    product_id: str = Field(primary_key=True)
    name: str
    delivery_type: str


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
    download_limit: int | None = None  # overrides the product's for this grant; None: the product's
    # The back-office form's one-time token of a grant by hand: a second submission grants nothing.
    submission: str | None = Field(default=None, unique=True)


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


# --- delivery -------------------------------------------------------------------------------


class Delivery(Base, table=True):
    """What a grant's delivery strategy did (or must still do) when access began or ended: one row
    per grant and change, written in the transaction of the change, so a failure is never lost
    with it. Its attempts are `delivery_attempts`; its retries are `delivery_runs`."""

    __tablename__ = "deliveries"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    email: str
    product_id: str = Field(index=True)
    grant_id: str = Field(index=True)
    purchase_id: str | None = None
    delivery_type: str
    action: str  # grant | revoke: what the strategy is asked to do
    ledger_action: str  # the ledger entry behind it: grant, restore, revoke, expire, suspend
    entry_id: str
    reason: str
    status: str  # pending | retrying | done | skipped | needs_customer | failed | superseded
    attempts: int = 0
    detail: str | None = None  # what the newest attempt said
    payload: str | None = Field(default=None, sa_type=Text)  # a third-party call's body, the same every attempt
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None


class DeliveryAttempt(Base, table=True):
    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)

    id: str = Field(primary_key=True)
    delivery_id: str = Field(index=True)
    attempt: int
    started_at: datetime
    outcome: str  # done | skipped | retry | needs_customer | failed
    status_code: int | None = None  # a third party's HTTP answer
    detail: str | None = None
    duration_ms: int = 0


class DeliveryRun(DueRow, Base, table=True):
    """A delivery's next attempt, due at a time: run by the delivery scheduler."""

    __tablename__ = "delivery_runs"
    __table_args__ = (pending_index("delivery_runs"),)

    delivery_id: str = Field(index=True)


class ProductFile(Base, table=True):
    """A file of a download product, kept by the storage adapter under `storage_key`."""

    __tablename__ = "product_files"

    id: str = Field(primary_key=True)
    product_id: str = Field(index=True)
    name: str
    content_type: str
    size: int = Field(sa_type=BigInteger)
    sha256: str
    storage_key: str
    uploaded_at: datetime
    removed_at: datetime | None = None
    # The back-office upload form's one-time token: the same form posted twice stores the file once.
    submission: str | None = Field(default=None, unique=True)


class DownloadLink(Base, table=True):
    """A short-lived link to one file for one grant. Only the SHA-256 of its token is kept; the
    link works while it has not expired and its grant is active."""

    __tablename__ = "download_links"

    id: str = Field(primary_key=True)
    token_sha256: str = Field(unique=True)
    grant_id: str = Field(index=True)
    customer_id: str
    product_id: str
    file_id: str
    purpose: str  # email | library
    issued_at: datetime
    expires_at: datetime


class Download(Base, table=True):
    """One download through a link: what a grant's download limit counts."""

    __tablename__ = "downloads"

    id: str = Field(primary_key=True)
    grant_id: str = Field(index=True)
    link_id: str
    file_id: str
    customer_id: str
    client: str | None = None
    downloaded_at: datetime


class LicenseKey(Base, table=True):
    """A grant's license key. It works while its grant is active and it has not expired."""

    __tablename__ = "license_keys"

    id: str = Field(primary_key=True)
    key: str = Field(unique=True)
    grant_id: str = Field(unique=True)
    customer_id: str = Field(index=True)
    product_id: str
    activation_limit: int | None = None  # None: no limit
    expires_at: datetime | None = None  # None: never
    created_at: datetime
    revoked_at: datetime | None = None  # when its access ended; cleared when access comes back


class LicenseActivation(Base, table=True):
    __tablename__ = "license_activations"

    id: str = Field(primary_key=True)
    license_key_id: str = Field(index=True)
    label: str
    created_at: datetime
    deactivated_at: datetime | None = None


class Section(Base, table=True):
    """A part of a membership product's content."""

    __tablename__ = "content_sections"

    id: str = Field(primary_key=True)
    product_id: str = Field(index=True)
    title: str
    position: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    submission: str | None = Field(default=None, unique=True)  # the back-office form's one-time token


class Lesson(Base, table=True):
    """A lesson of a section: text, and a video or audio link, opened `drip_days` after the grant."""

    __tablename__ = "content_lessons"

    id: str = Field(primary_key=True)
    section_id: str = Field(index=True)
    product_id: str = Field(index=True)
    title: str
    body: str = Field(default="", sa_type=Text)
    video_url: str | None = None
    audio_url: str | None = None
    drip_days: int | None = None  # None: available at once
    position: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    submission: str | None = Field(default=None, unique=True)  # the back-office form's one-time token


class ReconciliationRun(DueRow, Base, table=True):
    """A scheduled comparison of the purchases entitlements received with its grants; the next
    one is added when one is done."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (pending_index("reconciliation_runs"),)

    checked: int = 0
    mismatches: int = 0
    repaired: int = 0
    report: str | None = Field(default=None, sa_type=Text)  # the findings, as JSON


class ContentPublication(ActivityPublication, Base, table=True):
    """When `ContentOpened` last went out per customer, kind and product: the throttle that holds
    across replicas (`postsale.runtime.activity`)."""

    __tablename__ = "activity_publications"


class LessonOpening(Base, table=True):
    """A customer opened a lesson (the first time); what a product's completion is counted from."""

    __tablename__ = "lesson_openings"

    customer_id: str = Field(primary_key=True)
    lesson_id: str = Field(primary_key=True)
    product_id: str = Field(index=True)
    opened_at: datetime


class ProductCompletion(Base, table=True):
    """A customer opened every lesson of a membership product: `ProductCompleted` went out, once,
    because the key refuses a second row."""

    __tablename__ = "product_completions"

    customer_id: str = Field(primary_key=True)
    product_id: str = Field(primary_key=True)
    lessons: int
    completed_at: datetime


# Read by each grant's delivery, and again by its strategy: kept once loaded (`keep_loaded`).
keep_loaded(Product)
