"""When a membership lesson opens: at once, or `drip_days` after the customer's access began."""

from __future__ import annotations

from datetime import datetime, timedelta


def opens_at(access_since: datetime, drip_days: int | None) -> datetime:
    """The moment a lesson opens for a customer whose access began at `access_since`."""
    return access_since + timedelta(days=drip_days or 0)


def is_open(access_since: datetime, drip_days: int | None, now: datetime) -> bool:
    return opens_at(access_since, drip_days) <= now
