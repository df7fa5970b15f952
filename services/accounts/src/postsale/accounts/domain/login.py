"""The rules of signing in without a password and of resetting it: single-use links and one-time
codes that expire soon, with few tries per code."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from postsale.runtime.clock import as_utc

LOGIN_LINK_LIFETIME = timedelta(minutes=15)
PASSWORD_RESET_LIFETIME = timedelta(minutes=30)
EMAIL_CHANGE_LIFETIME = timedelta(hours=24)
MAX_CODE_ATTEMPTS = 5  # wrong codes that use a challenge up
CODE_DIGITS = 6


class Purpose(str, enum.Enum):
    LOGIN = "login"
    RESET = "reset"


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_sha256(challenge_id: str, code: str) -> str:
    """A code is hashed with its challenge's id, so the same code of two challenges differs."""
    return hashlib.sha256(f"{challenge_id}:{code}".encode()).hexdigest()


def code_matches(stored_sha256: str, challenge_id: str, code: str) -> bool:
    return hmac.compare_digest(stored_sha256, code_sha256(challenge_id, code))


def well_formed_code(raw: str) -> str | None:
    """The code as typed, without spaces or dashes, when it is six digits; else None."""
    code = re.sub(r"[\s-]", "", raw or "")[:20]
    return code if re.fullmatch(rf"\d{{{CODE_DIGITS}}}", code) else None


class LinkRefusal(enum.Enum):
    UNKNOWN = "This link is not valid. Ask for a new one."
    USED = "This link was used already. Ask for a new one."
    EXPIRED = "This link has expired. Ask for a new one."


CODE_REFUSED = "That code is not right, or it has expired. Check the latest email, or ask for a new code."


def link_refusal(*, found: bool, used_at: datetime | None, expires_at: datetime | None,
                 failed_attempts: int, now: datetime) -> LinkRefusal | None:
    if not found:
        return LinkRefusal.UNKNOWN
    if used_at is not None or failed_attempts >= MAX_CODE_ATTEMPTS:
        return LinkRefusal.USED
    if expires_at is None or as_utc(expires_at) <= now:
        return LinkRefusal.EXPIRED
    return None
