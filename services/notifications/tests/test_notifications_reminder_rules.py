"""The rules behind the reminders, without a database: which periods are yearly, when a reminder
falls due, and how a subscription's standing follows facts that arrive late or out of order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postsale.notifications.domain import reminders, subscriptions

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("start", "end", "yearly"), [
    (T0, T0.replace(year=2027), True),  # 365 days
    (T0.replace(year=2027), T0.replace(year=2028), True),  # 366 days (a leap year)
    (T0 + timedelta(seconds=2), T0.replace(year=2027), True),  # counted from the purchase, a moment late
    (T0, T0.replace(year=2028), True),  # two years
    (T0, T0 + timedelta(days=31), False),
    (T0, T0 + timedelta(days=183), False),  # half a year
])
def test_only_a_period_of_a_year_or_longer_is_reminded_a_week_ahead(start, end, yearly):
    due = reminders.renewal_due(start, end, known_at=start)
    assert due == (end - timedelta(days=7) if yearly else None)


def test_no_reminder_is_planned_for_a_moment_already_past():
    assert reminders.renewal_due(T0, T0.replace(year=2027), known_at=T0.replace(year=2027)) is None
    assert reminders.trial_ending_due(T0, known_at=T0 + timedelta(hours=1)) is None
    # A trial shorter than the notice is reminded at once (its due time is already past).
    assert reminders.trial_ending_due(T0 + timedelta(days=2), known_at=T0) == T0 - timedelta(days=1)


def test_a_reminder_is_not_sent_once_its_moment_has_passed():
    standing = subscriptions.started(T0, trial_ends_at=T0 + timedelta(days=14))
    moment = T0 + timedelta(days=14)
    assert reminders.why_not_send("trial_ending", moment=moment, planned_at=T0, standing=standing,
                                  now=moment - timedelta(days=3)) is None
    assert reminders.why_not_send("trial_ending", moment=moment, planned_at=T0, standing=standing,
                                  now=moment) is not None


def test_a_late_fact_changes_nothing_and_an_ended_subscription_stays_ended():
    standing = subscriptions.started(T0, trial_ends_at=None)
    paused = subscriptions.paused(standing, T0 + timedelta(days=5))
    # A pause replayed after the resume that followed it.
    resumed = subscriptions.resumed(paused, T0 + timedelta(days=6))
    assert subscriptions.paused(resumed, T0 + timedelta(days=5)).status == "active"
    ended = subscriptions.cancelled(resumed, T0 + timedelta(days=7))
    assert subscriptions.resumed(ended, T0 + timedelta(days=8)).status == "cancelled"
    assert subscriptions.paid(ended, T0 + timedelta(days=8)).status == "cancelled"
