"""The rules of account setup: which token may set up which account, and the limits of what a
person may type into accounts' forms."""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from postsale.runtime.clock import as_utc
from postsale.runtime.passwords import password_problem

SETUP_TOKEN_LIFETIME = timedelta(days=14)
# A password chosen at checkout waits this long for its purchase to reach accounts.
PENDING_ACTIVATION_LIFETIME = timedelta(hours=24)

# Limits at the edge: every value is checked against these before anything is stored, so no
# event that a form causes can grow beyond what Kafka accepts.
MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MAX_TOKEN_LENGTH = 128  # accounts' tokens have 43 characters, checkout's 64
MAX_URL_LENGTH = 2000
MAX_FORM_BYTES = 64 * 1024  # every form field at its limit, URL-encoded, fits several times over


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed_token(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH


def details_problem(first_name: str, last_name: str, password: str, password_repeat: str) -> str | None:
    """What is wrong with the details typed on the account page (or at checkout), for the customer."""
    if len(first_name) > MAX_NAME_LENGTH or len(last_name) > MAX_NAME_LENGTH:
        return f"A name can be at most {MAX_NAME_LENGTH} characters."
    if not first_name.strip() or not last_name.strip():
        return "Enter your first and last name."
    return password_problem(password, password_repeat)


class Refusal(enum.Enum):
    """Why a setup token cannot set up its account (now), with what the customer reads."""

    UNKNOWN = "This account setup link is not valid."
    ALREADY_SET_UP = "This account is already set up. Log in with your email and password."
    # The browser token of a buyer whose email already had a customer record: whoever typed the
    # email at checkout is not yet proven to own it, so only the link emailed to it may set it up.
    EMAIL_PROOF_REQUIRED = "This email address already has purchases: use the link we emailed to it."
    EXPIRED = "This account setup link has expired. Log in, or ask for a new link."


def refusal(*, found: bool, activated_at: datetime | None, email_proof_required: bool,
            expires_at: datetime | None, now: datetime) -> Refusal | None:
    if not found:
        return Refusal.UNKNOWN
    if activated_at is not None:
        return Refusal.ALREADY_SET_UP
    if email_proof_required:
        return Refusal.EMAIL_PROOF_REQUIRED
    if expires_at is None or as_utc(expires_at) < now:
        return Refusal.EXPIRED
    return None


def trusted_destination(url: str | None) -> str | None:
    """The purchase's `after_setup_url` when it is a web address; it comes from the seller's offer
    through checkout's event, never from a request, so it is the only destination off our services."""
    if not url or len(url) > MAX_URL_LENGTH:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("https", "http") and parts.netloc else None
