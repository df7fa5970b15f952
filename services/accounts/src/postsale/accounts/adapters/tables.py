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


class SetupToken(Base, table=True):
    """A single-use account setup token; only its SHA-256 is stored."""

    __tablename__ = "setup_tokens"

    token_sha256: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    purchase_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class LoginSession(Base, table=True):
    __tablename__ = "login_sessions"

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None
