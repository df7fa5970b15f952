"""The tables of outgoing webhooks: the seller's endpoints, one delivery per event and endpoint,
every attempt, and the timed sends the scheduler runs (migration 0005)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from postsale.notifications.adapters.tables import Base
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import DueRow, pending_index


class WebhookEndpoint(Base, table=True):
    """Where the seller's systems take Postsale's events, and which ones."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True)  # we_...
    url: str
    description: str = ""
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    secret: str  # whsec_..., the Standard Webhooks signing secret
    # Told when the endpoint is disabled, besides the seller's addresses.
    alert_emails: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    # The first failed attempt since the last one that succeeded; none while the endpoint answers.
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # The back-office form submissions that added the endpoint, and that last rotated its secret:
    # the same form sent twice adds one endpoint, or rotates once.
    submission: str | None = Field(default=None, unique=True)
    rotation_submission: str | None = None
    # Until when the back office may show the secret it just made, once: cleared when shown.
    show_secret_until: datetime | None = None


class WebhookDelivery(Base, table=True):
    """One event for one endpoint. Its id is the `webhook-id` of every attempt, replays included.

    status: `waiting` (an earlier delivery of the same key is not finished), `pending` (being
    attempted), `delivered`, or `failed` (a dead letter the seller may replay)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_queue", "endpoint_id", "ordering_key", "status"),
    )

    seq: int | None = Field(default=None, primary_key=True)  # the order the events arrived in
    id: str = Field(unique=True)  # msg_...
    endpoint_id: str = Field(index=True)
    event_id: str
    event_type: str
    ordering_key: str  # the event's Kafka key (the customer, mostly): delivered in order per key
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str
    attempts: int = 0
    round_attempts: int = 0  # attempts since it was queued or replayed: where it is in the schedule
    created_at: datetime
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class WebhookAttempt(Base, table=True):
    """One HTTP call of a delivery, as the endpoint answered it (or did not)."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True)
    number: int
    attempted_at: datetime
    succeeded: bool
    status_code: int | None = None
    latency_ms: int
    response_excerpt: str | None = None  # the first characters of the answer's body
    error: str | None = None


class WebhookSend(DueRow, Base, table=True):
    """The next attempt of a delivery, due at `due_at`, run by the scheduler."""

    __tablename__ = "webhook_sends"
    __table_args__ = (pending_index("webhook_sends"),)

    endpoint_id: str
    delivery_id: str = Field(index=True)
