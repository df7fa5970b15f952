from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import table_registry


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
