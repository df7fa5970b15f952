from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry
from postsale.runtime.scheduler import DueRow, pending_index


class Base(SQLModel, registry=table_registry()):
    """The notifications service's tables, made by its migrations (`postsale/notifications/migrations/`)."""


class Email(Base, table=True):
    """The email log. The key (`purchase-confirmation:<purchase id>`) makes each email happen once."""

    __tablename__ = "emails"

    key: str = Field(primary_key=True)
    template: str
    to: str = Field(index=True)
    customer_id: str | None = Field(default=None, index=True)
    subject: str
    text_body: str = Field(sa_column=Column(Text, nullable=False))
    html_body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="queued", index=True)  # queued | sent | failed | suppressed
    marketing: bool = False  # follow-ups, follow-up offers, abandoned checkout: unsubscribable
    unsubscribe_url: str | None = None  # set on marketing emails: List-Unsubscribe
    message_id: str | None = None  # the Message-ID the relay accepted
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    sent_at: datetime | None = None


class PurchaseRecord(Base, table=True):
    """What notifications knows of a purchase (from `PurchaseCompleted`), to name it in the
    emails that come later: a refund, a failed renewal."""

    __tablename__ = "purchases"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    offer_id: str
    offer_name: str
    subscription_id: str | None = Field(default=None, index=True)
    on_partial_refund: str = "keep"  # the offer's access policy: keep | revoke
    completed_at: datetime
    email: str | None = Field(default=None, index=True)
    products: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # product_id, name
    provider: str | None = None  # sandbox | stripe | none: the follow-ups' simulator runs only for the sandbox

    @property
    def product_ids(self) -> list[str]:
        return [p["product_id"] for p in self.products]


class SubscriptionState(Base, table=True):
    """A subscription or payment plan as checkout's events describe it: enough to word its emails
    and to tell, when a reminder falls due, whether it still applies."""

    __tablename__ = "subscription_states"

    id: str = Field(primary_key=True)  # checkout's subscription id
    purchase_id: str | None = Field(default=None, index=True)
    customer_id: str = Field(index=True)
    offer_id: str
    offer_name: str | None = None  # known once its PurchaseCompleted arrived
    billing: str | None = None  # subscription | payment_plan, known from its first billing event
    status: str  # trialing | active | past_due | paused | cancelled | completed
    changed_at: datetime  # when the newest fact applied happened; older ones change nothing
    cancel_at: datetime | None = None  # a scheduled cancellation, until undone
    last_paused_at: datetime | None = None


class Reminder(DueRow, Base, table=True):
    """An email to send at `due_at` if it still applies then (a trial ending, a yearly renewal).
    Its id is the key of the email it sends, so planning it again changes nothing."""

    __tablename__ = "reminders"
    __table_args__ = (pending_index("reminders"),)

    kind: str  # trial_ending | renewal
    subscription_id: str = Field(index=True)
    customer_id: str
    to: str
    moment: datetime  # when the trial ends, or the renewal is charged
    planned_at: datetime  # when the fact it was planned from happened
    amount: int | None = None  # the last payment, when one was made
    currency: str | None = None


class AccessRecord(Base, table=True):
    """A customer's access to a product from one source (a purchase, or `manual` for the seller's
    grants), as entitlements' ledger events describe it: when it ends, whether it still holds."""

    __tablename__ = "access_records"

    customer_id: str = Field(primary_key=True)
    product_id: str = Field(primary_key=True)
    source: str = Field(primary_key=True)  # the purchase id, or "manual"
    email: str
    product_name: str
    status: str  # active | suspended | revoked
    expires_at: datetime | None = None  # empty: for good
    changed_at: datetime  # the newest ledger fact applied; older ones change nothing


class FollowUp(DueRow, Base, table=True):
    """A timed email: an access-ending reminder, a step of a follow-up sequence, or the check of a
    follow-up rule. Its id is the key of the email it would send, so planning it twice changes
    nothing; whether it still applies is decided when it falls due."""

    __tablename__ = "follow_ups"
    __table_args__ = (pending_index("follow_ups"),)

    kind: str  # access_ending | sequence_step | rule
    customer_id: str = Field(index=True)
    to: str
    purchase_id: str | None = None
    offer_id: str | None = None
    product_id: str | None = None
    sequence_id: str | None = None
    step: int | None = None
    rule_id: str | None = None
    moment: datetime | None = None  # what it announces or measures from: access end, purchase
    planned_at: datetime


class TemplateOverride(Base, table=True):
    """The seller's version of an email template (a built-in one edited, or one of the seller's own
    for follow-ups); the built-in default applies while there is none."""

    __tablename__ = "email_templates"

    name: str = Field(primary_key=True)
    subject: str
    text_body: str = Field(sa_column=Column(Text, nullable=False))
    html_body: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class StoreTheme(Base, table=True):
    """The seller's theme (accounts' `ThemeChanged`), which every email's HTML takes."""

    __tablename__ = "store_theme"

    id: str = Field(default="store", primary_key=True)
    settings: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    changed_at: datetime


class EmailSettings(Base, table=True):
    """The seller's email settings: who hears of each sale (empty: `NOTIFICATIONS_SELLER_EMAILS`)."""

    __tablename__ = "email_settings"

    id: str = Field(default="store", primary_key=True)
    seller_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notify_each_sale: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class Recipient(Base, table=True):
    """An address marketing emails went to: its unsubscribe token, and its suppression (the
    customer unsubscribed, or the relay refused the address for good)."""

    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("token", name="uq_recipients_token"),)

    address: str = Field(primary_key=True)  # lower case
    token: str
    suppressed_reason: str | None = None  # unsubscribed | refused by the relay
    suppressed_at: datetime | None = None
    detail: str | None = None  # the relay's answer, for a refused address
    updated_at: datetime = Field(default_factory=utcnow)


class Sequence(Base, table=True):
    """A follow-up sequence of an offer: emails at delays after its purchase."""

    __tablename__ = "sequences"

    id: str = Field(primary_key=True)
    offer_id: str = Field(index=True)
    name: str
    steps: list[dict] = Field(sa_column=Column(JSON, nullable=False))  # [{"delay_hours": int, "template": str}]
    created_at: datetime = Field(default_factory=utcnow)
    # The back-office form submission that made it: the same form sent twice makes one sequence.
    submission: str | None = Field(default=None, unique=True)


class FollowUpRule(Base, table=True):
    """A follow-up offer sent when a customer did (or did not do) something."""

    __tablename__ = "follow_up_rules"

    id: str = Field(primary_key=True)
    trigger: str  # bought_without | no_login | upsell_declined | product_completed
    offer_id: str | None = Field(default=None, index=True)  # the offer bought (or declined)
    other_offer_id: str | None = None  # bought_without: the offer not bought
    product_id: str | None = None  # product_completed: the product finished
    days: int | None = None
    template: str
    link_offer_id: str  # the offer the email links to
    created_at: datetime = Field(default_factory=utcnow)
    # The back-office form submission that made it: the same form sent twice makes one rule.
    submission: str | None = Field(default=None, unique=True)


class LastLogin(Base, table=True):
    """When a customer last logged in (accounts' `CustomerActivity`), for the rule "not logged in"."""

    __tablename__ = "last_logins"

    customer_id: str = Field(primary_key=True)
    logged_in_at: datetime


# Registered with `Base` here, so that the service's metadata (and its migrations check) has them.
from postsale.notifications.webhooks import tables as _webhook_tables  # noqa: E402,F401
