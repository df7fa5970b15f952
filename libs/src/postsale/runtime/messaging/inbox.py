"""The inbox: one row per (consumer, event id), written in the transaction of the effect."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow


class InboxMessage(SQLModel, table=True):
    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    event_type: str
    received_at: datetime = Field(default_factory=utcnow)
