"""A subscription's and a payment plan's life as decisions at given times (no I/O, no wall clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.billing_cycle import (
    BillingError, ChargeDue, Cycle, cancel, charge_failed, charge_succeeded, due, pause, resume, undo_cancel)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 31, 9, 0, tzinfo=timezone.utc)
MONTHLY = BillingTerms("subscription", 1900, "EUR", interval="month", trial_days=14)
PLAN = BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3)


def trialing() -> Cycle:
    return Cycle("subscription", "trialing", MONTHLY, T0, T0 + timedelta(days=14))


def test_the_trial_ends_with_a_charge_and_each_renewal_moves_the_period_on():
    cycle = trialing()
    assert due(cycle, T0 + timedelta(days=13)) is None
    charge = due(cycle, T0 + timedelta(days=14))
    assert charge == ChargeDue(T0 + timedelta(days=14), datetime(2026, 3, 14, 9, tzinfo=timezone.utc), None)
    cycle = charge_succeeded(cycle, charge)
    assert (cycle.status, cycle.period_end, cycle.next_charge_at) == ("active", charge.period_end, charge.period_end)
    again = due(cycle, cycle.period_end)
    assert again.period_end == datetime(2026, 4, 14, 9, tzinfo=timezone.utc)


def test_a_payment_plan_completes_after_its_last_instalment():
    cycle = Cycle("payment_plan", "active", PLAN, T0, datetime(2026, 2, 28, 9, tzinfo=timezone.utc), instalments_paid=1)
    for number in (2, 3):
        charge = due(cycle, cycle.period_end)
        assert charge.instalment_number == number
        cycle = charge_succeeded(cycle, charge)
    assert (cycle.status, cycle.instalments_paid, cycle.next_charge_at) == ("completed", 3, None)
    assert due(cycle, cycle.period_end + timedelta(days=400)) is None
    with pytest.raises(BillingError, match="cannot be cancelled by the customer"):
        cancel(Cycle("payment_plan", "active", PLAN, T0, T0), T0, when="now", by_customer=True)


def test_failures_make_it_past_due_retry_after_3_5_7_days_then_give_up():
    cycle = charge_succeeded(trialing(), due(trialing(), T0 + timedelta(days=14)))
    failed_at = cycle.period_end
    failure = charge_failed(cycle, failed_at, message="Your card was declined.")
    assert failure.cycle.status == "past_due" and failure.next_retry_at == failed_at + timedelta(days=3)
    assert due(failure.cycle, failed_at + timedelta(days=2)) is None
    assert isinstance(due(failure.cycle, failure.next_retry_at), ChargeDue)
    second = charge_failed(failure.cycle, failure.next_retry_at, message="Your card was declined.")
    assert second.next_retry_at == failed_at + timedelta(days=5)
    third = charge_failed(second.cycle, second.next_retry_at, message="Your card was declined.")
    assert third.next_retry_at == failed_at + timedelta(days=7)
    assert charge_failed(third.cycle, third.next_retry_at, message="Your card was declined.").next_retry_at is None
    recovered = charge_succeeded(second.cycle, due(second.cycle, second.next_retry_at))
    assert (recovered.status, recovered.failures, recovered.retry_at) == ("active", 0, None)


def test_a_hard_decline_skips_the_remaining_retries():
    assert charge_failed(trialing(), T0, message="Your card was reported stolen.").next_retry_at is None


def test_cancel_at_period_end_keeps_billing_to_the_end_and_can_be_undone():
    cycle = charge_succeeded(trialing(), due(trialing(), T0 + timedelta(days=14)))
    pending = cancel(cycle, T0 + timedelta(days=20), when="period_end")
    assert pending.cancel_at == cycle.period_end and pending.next_charge_at is None
    assert pending.next_event_at == cycle.period_end
    assert due(pending, cycle.period_end) == "cancel"
    assert undo_cancel(pending).next_charge_at == cycle.period_end
    on_date = cancel(cycle, T0 + timedelta(days=20), when="date", at=T0 + timedelta(days=25))
    assert due(on_date, T0 + timedelta(days=25)) == "cancel"
    assert cancel(cycle, T0 + timedelta(days=20), when="now").status == "cancelled"
    with pytest.raises(BillingError, match="in the future"):
        cancel(cycle, T0 + timedelta(days=20), when="date", at=T0)
    with pytest.raises(BillingError, match="no pending cancellation"):
        undo_cancel(cycle)


def test_a_pause_stops_billing_and_resuming_keeps_what_was_left_of_the_period():
    cycle = charge_succeeded(trialing(), due(trialing(), T0 + timedelta(days=14)))
    paused = pause(cycle, cycle.period_end - timedelta(days=10))
    assert paused.next_charge_at is None and due(paused, cycle.period_end + timedelta(days=90)) is None
    resumed = resume(paused, cycle.period_end + timedelta(days=60))
    assert resumed.status == "active"
    assert resumed.period_end == cycle.period_end + timedelta(days=70)
    with pytest.raises(BillingError, match="not paused"):
        resume(resumed, T0)
