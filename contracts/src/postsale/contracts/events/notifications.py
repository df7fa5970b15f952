"""Notifications' events: every email handed to the relay, or given up on."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Event


# --- notifications.emails.v1 ----------------------------------------------------------------


class _Email(Event):
    topic: ClassVar[str] = topics.EMAILS.name
    subject_field: ClassVar[str] = "email_key"
    key_field: ClassVar[str] = "to"

    email_key: str = Field(description="Unique per email, e.g. `purchase-confirmation:<purchase id>`.")
    template: str
    to: str
    customer_id: str | None = None


class EmailSent(_Email):
    """An email was handed to the SMTP relay."""

    event_type: ClassVar[str] = "postsale.email.sent"
    sent_at: AwareDatetime


class EmailFailed(_Email):
    """Sending an email was given up after its retries."""

    event_type: ClassVar[str] = "postsale.email.failed"
    attempts: int = Field(ge=1)
    error: str
    failed_at: AwareDatetime
