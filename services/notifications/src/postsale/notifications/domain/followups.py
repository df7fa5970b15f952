"""Follow-up sequences and rules as decisions: when each step falls due, and whether a follow-up
still goes out when it does. Pure: the clock is an argument."""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_STEPS = 20
MAX_DELAY_HOURS = 24 * 730  # two years


def step_due(purchased_at: datetime, delay_hours: int) -> datetime:
    return purchased_at + timedelta(hours=delay_hours)


def why_not_send_step(*, sequence_exists: bool, access: bool | None) -> str | None:
    """None when the step goes out; otherwise why not. `access` is None while nothing is known of
    the customer's access to the offer's products (its events may come later): the step goes out."""
    if not sequence_exists:
        return "the sequence was deleted"
    if access is False:
        return "the customer's access to the offer's products has ended"
    return None


def bought_without(*, bought_at: datetime, other_purchases: list[datetime], days: int) -> bool:
    """"Bought A but not B within N days": no purchase of B from A's purchase to N days after."""
    window_end = bought_at + timedelta(days=days)
    return not any(bought_at <= at <= window_end for at in other_purchases)


def not_logged_in(*, bought_at: datetime, last_login: datetime | None) -> bool:
    """"Has not logged in N days after buying": no login since the purchase."""
    return last_login is None or last_login < bought_at
