"""When a reminder falls due, and whether it still applies then. Pure: the clock is an argument."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from postsale.notifications.domain.subscriptions import Standing

Kind = Literal["trial_ending", "renewal"]
TRIAL_ENDING_NOTICE = timedelta(days=3)
RENEWAL_NOTICE = timedelta(days=7)
# A year or longer. A day short of 365, so that a yearly period counted from the purchase's
# completion (a moment after the period started) still counts.
YEARLY = timedelta(days=364)
# What the subscription must be when the reminder is sent.
EXPECTED: dict[str, frozenset[str]] = {"trial_ending": frozenset({"trialing"}), "renewal": frozenset({"active"})}


def trial_ending_due(trial_ends_at: datetime, *, known_at: datetime) -> datetime | None:
    """The trial-ending reminder's due time; None when the trial is over already."""
    return trial_ends_at - TRIAL_ENDING_NOTICE if trial_ends_at > known_at else None


def renewal_due(period_start: datetime | None, period_end: datetime | None, *, known_at: datetime) -> datetime | None:
    """The renewal reminder's due time, for a period of a year or longer that has not ended; else None."""
    if period_start is None or period_end is None or period_end <= known_at:
        return None
    return period_end - RENEWAL_NOTICE if period_end - period_start >= YEARLY else None


def why_not_send(kind: Kind, *, moment: datetime, planned_at: datetime, standing: Standing | None,
                 now: datetime) -> str | None:
    """None when the reminder is to be sent at `now`; otherwise why not, in words for the log."""
    if now >= moment:
        return "too late: the moment it announces has passed"
    if standing is None:
        return "the subscription is unknown"
    if standing.status not in EXPECTED[kind]:
        return f"the subscription is {standing.status}"
    if standing.cancel_at is not None and standing.cancel_at <= moment:
        return "the subscription is cancelled by then"
    if standing.last_paused_at is not None and standing.last_paused_at >= planned_at:
        return "the subscription was paused since, which moved its dates"
    return None
