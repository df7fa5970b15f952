"""When access that ends is announced, and whether the announcement still applies. Pure: the
clock is an argument."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

ENDING_NOTICE = timedelta(days=7)
# A short grant is announced sooner: a quarter of its length before it ends (a 7-day grant, a day
# and 18 hours before), so the reminder never comes right after the welcome.
SHORT_GRANT_SHARE = 4
MIN_NOTICE = timedelta(hours=1)


@dataclass(frozen=True)
class Access:
    """One source's access to a product, as the ledger's events left it."""

    status: str  # active | suspended | revoked
    expires_at: datetime | None
    changed_at: datetime


def ending_due(granted_at: datetime, expires_at: datetime | None) -> datetime | None:
    """The access-ending reminder's due time; None for access for good, or too short to announce."""
    if expires_at is None or expires_at <= granted_at:
        return None
    notice = min(ENDING_NOTICE, (expires_at - granted_at) / SHORT_GRANT_SHARE)
    return expires_at - notice if notice >= MIN_NOTICE else None


def why_not_remind(ends_at: datetime, *, this: Access | None, others: list[Access], now: datetime) -> str | None:
    """None when the customer is to be told at `now` that access ends at `ends_at`; otherwise why not."""
    if now >= ends_at:
        return "too late: the access has ended"
    if this is None or this.status == "revoked":
        return "the access was revoked since"
    if this.expires_at != ends_at:
        return "the access was extended or changed since"
    for other in others:
        if other.status != "revoked" and (other.expires_at is None or other.expires_at > ends_at):
            return "another grant keeps the access beyond that date"
    return None


def has_access(records: list[Access], now: datetime) -> bool | None:
    """Whether any source gives access at `now`; None when nothing is known (no event arrived yet)."""
    if not records:
        return None
    return any(r.status == "active" and (r.expires_at is None or r.expires_at > now) for r in records)
