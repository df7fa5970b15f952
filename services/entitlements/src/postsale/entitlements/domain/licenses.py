"""License keys: their format and whether one works, as pure functions."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Literal

# Crockford's base32: no I, L, O or U, so a key read aloud or typed from paper stays right.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS, GROUP_LENGTH = 5, 5  # 125 random bits
_SHAPE = re.compile(r"^[A-Z0-9-]{4,80}$")

LicenseStatus = Literal["active", "suspended", "revoked", "expired"]


def new_key(prefix: str = "") -> str:
    groups = ["".join(secrets.choice(_ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS)]
    return "-".join(([prefix] if prefix else []) + groups)


def normalize_key(raw: str) -> str | None:
    """The key as stored (upper case, no surrounding blanks), or None when it cannot be one."""
    key = raw.strip().upper()
    return key if _SHAPE.match(key) else None


def license_status(grant_status: str, grant_active: bool, expires_at: datetime | None, now: datetime) -> LicenseStatus:
    """A key works while its grant is active and it has not expired: it is revoked with access."""
    if grant_status == "suspended":
        return "suspended"
    if grant_status in ("revoked", "expired") or not grant_active:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
