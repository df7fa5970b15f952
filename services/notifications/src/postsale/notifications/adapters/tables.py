from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
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
    status: str = Field(default="queued", index=True)  # queued | sent | failed
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
