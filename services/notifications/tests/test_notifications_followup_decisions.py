"""The decisions behind access-ending reminders and follow-ups, without a database: when a
reminder falls due, whether it still applies, and when a rule holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postsale.notifications.domain import access, followups

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("days", "notice"), [
    (365, timedelta(days=7)), (28, timedelta(days=7)), (8, timedelta(days=2)), (1, timedelta(hours=6)),
])
def test_the_reminder_comes_a_week_before_or_a_quarter_of_a_short_grant(days, notice):
    ends = T0 + timedelta(days=days)
    assert access.ending_due(T0, ends) == ends - notice


def test_access_for_good_or_too_short_is_not_announced():
    assert access.ending_due(T0, None) is None
    assert access.ending_due(T0, T0 + timedelta(hours=2)) is None


def test_a_reminder_applies_only_to_access_that_still_ends_then():
    ends = T0 + timedelta(days=30)
    active = access.Access("active", ends, T0)
    now = ends - timedelta(days=7)
    assert access.why_not_remind(ends, this=active, others=[], now=now) is None
    assert "revoked" in access.why_not_remind(ends, this=access.Access("revoked", None, T0), others=[], now=now)
    assert "extended" in access.why_not_remind(ends, this=access.Access("active", ends + timedelta(days=9), T0),
                                               others=[], now=now)
    assert "another grant" in access.why_not_remind(ends, this=active, others=[access.Access("active", None, T0)],
                                                    now=now)
    assert access.why_not_remind(ends, this=active, others=[access.Access("revoked", None, T0)], now=now) is None
    assert "too late" in access.why_not_remind(ends, this=active, others=[], now=ends)


def test_access_is_known_only_from_its_events():
    assert access.has_access([], T0) is None
    assert access.has_access([access.Access("revoked", None, T0), access.Access("active", None, T0)], T0)
    assert not access.has_access([access.Access("active", T0 - timedelta(seconds=1), T0)], T0)
    assert not access.has_access([access.Access("suspended", None, T0)], T0)


def test_a_step_stops_when_access_ended_or_the_sequence_is_gone():
    assert followups.why_not_send_step(sequence_exists=True, access=None) is None
    assert followups.why_not_send_step(sequence_exists=True, access=True) is None
    assert "ended" in followups.why_not_send_step(sequence_exists=True, access=False)
    assert "deleted" in followups.why_not_send_step(sequence_exists=False, access=True)


def test_bought_without_and_not_logged_in_hold_only_inside_their_window():
    later = [T0 + timedelta(days=6)]
    assert followups.bought_without(bought_at=T0, other_purchases=later, days=5)
    assert not followups.bought_without(bought_at=T0, other_purchases=[T0 + timedelta(days=5)], days=5)
    assert followups.bought_without(bought_at=T0, other_purchases=[T0 - timedelta(days=1)], days=5)
    assert followups.not_logged_in(bought_at=T0, last_login=None)
    assert followups.not_logged_in(bought_at=T0, last_login=T0 - timedelta(hours=1))
    assert not followups.not_logged_in(bought_at=T0, last_login=T0 + timedelta(hours=1))
