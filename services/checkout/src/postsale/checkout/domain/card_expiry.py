"""When a saved card's expiry matters to a subscription or payment plan, as pure decisions.

A card is valid to the end of its expiry month. The customer is warned `WARN_DAYS` before that
(at once when that moment has passed), and only when the billing will still take a payment
after it: the one the card would fail.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from postsale.checkout.domain.billing_cycle import LIVE, Cycle

WARN_DAYS = 30
MAX_PERIODS = 1000  # a daily subscription and a card valid for years: enough steps, and never endless


def card_ends_at(exp_month: int, exp_year: int) -> datetime:
    """The first moment the card no longer works: the start of the month after its expiry month (UTC)."""
    return datetime(exp_year + exp_month // 12, exp_month % 12 + 1, 1, tzinfo=timezone.utc)


def warn_at(exp_month: int, exp_year: int, now: datetime) -> datetime:
    """When to warn: `WARN_DAYS` before the card ends, or now when that is already past."""
    return max(card_ends_at(exp_month, exp_year) - timedelta(days=WARN_DAYS), now)


def payment_the_card_fails(cycle: Cycle, card_ends: datetime) -> datetime | None:
    """The first payment the billing takes once the card has ended; None when it takes none (it
    ended, is paused, is cancelled before then, or a payment plan is paid off by then)."""
    if cycle.status not in LIVE:
        return None
    if cycle.status == "past_due":
        if cycle.retry_at is not None and cycle.retry_at >= card_ends:
            return cycle.retry_at
        # The failing period, once paid, makes the next one due at its end.
        cycle = replace(cycle, period_end=cycle.terms.period_end(cycle.period_end),
                        instalments_paid=cycle.instalments_paid + (1 if cycle.kind == "payment_plan" else 0))
    due, paid = cycle.period_end, cycle.instalments_paid
    for _ in range(MAX_PERIODS):
        if cycle.cancel_at is not None and due >= cycle.cancel_at:
            return None
        if cycle.kind == "payment_plan" and paid >= (cycle.terms.instalments or 0):
            return None
        if due >= card_ends:
            return due
        due, paid = cycle.terms.period_end(due), paid + 1
    return None
