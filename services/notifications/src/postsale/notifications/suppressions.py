"""Who gets no marketing email: an address that unsubscribed, or one the relay refused for good.

Marketing emails (follow-ups, follow-up offers, abandoned checkout) each carry the address's
unsubscribe link, a random token kept per address; transactional emails (receipts, links,
dunning) never look here. Each function runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import re
import secrets

from sqlmodel import Session, select

from postsale.notifications.adapters.tables import Recipient
from postsale.runtime.clock import utcnow
from postsale.runtime.settings import PublicUrls, from_environment

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
UNSUBSCRIBED = "unsubscribed"
REFUSED = "refused by the relay"


def recipient(session: Session, address: str) -> Recipient:
    """The address's row, made with its token the first time a marketing email is meant for it."""
    key = address.strip().lower()
    row = session.get(Recipient, key)
    if row is None:
        row = Recipient(address=key, token=secrets.token_urlsafe(24))
        session.add(row)
        session.flush()
    return row


def unsubscribe_url(row: Recipient) -> str:
    return f"{from_environment(PublicUrls).notifications_url}/unsubscribe/{row.token}"


def preferences_url(row: Recipient) -> str:
    return f"{from_environment(PublicUrls).notifications_url}/preferences/{row.token}"


def is_suppressed(session: Session, address: str) -> bool:
    row = session.get(Recipient, address.strip().lower())
    return row is not None and row.suppressed_at is not None


def suppress(session: Session, address: str, reason: str, detail: str | None = None) -> Recipient:
    """Suppresses the address (again: keeps the first reason and moment)."""
    row = recipient(session, address)
    if row.suppressed_at is None:
        row.suppressed_reason, row.suppressed_at, row.detail = reason, utcnow(), (detail or "")[:500] or None
        row.updated_at = utcnow()
        session.add(row)
    return row


def resubscribe(session: Session, row: Recipient) -> None:
    """The customer wants marketing emails again (an address the relay refused stays suppressed)."""
    if row.suppressed_reason == UNSUBSCRIBED:
        row.suppressed_reason, row.suppressed_at, row.updated_at = None, None, utcnow()
        session.add(row)


def by_token(session: Session, token: str) -> Recipient | None:
    if not TOKEN.fullmatch(token):
        return None
    return session.exec(select(Recipient).where(Recipient.token == token)).first()
