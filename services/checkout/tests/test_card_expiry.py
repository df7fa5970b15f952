"""When a saved card's expiry warns the customer, as decisions at given times (no I/O, no wall clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from postsale.checkout.adapters.payments.sandbox import card_expiry
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.billing_cycle import Cycle
from postsale.checkout.domain.card_expiry import card_ends_at, payment_the_card_fails, warn_at

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=timezone.utc)
MONTHLY = BillingTerms("subscription", 1900, "EUR", interval="month")
PLAN = BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3)
ENDS = card_ends_at(3, 2026)  # a card valid through March 2026


def test_a_card_works_to_the_end_of_its_month_and_the_warning_comes_30_days_before():
    assert ENDS == datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert card_ends_at(12, 2026) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert warn_at(3, 2026, T0) == datetime(2026, 3, 2, tzinfo=timezone.utc)
    late = datetime(2026, 3, 20, tzinfo=timezone.utc)
    assert warn_at(3, 2026, late) == late  # already past: at once


def test_a_subscription_warns_for_the_first_renewal_after_the_card_ends():
    cycle = Cycle("subscription", "active", MONTHLY, T0, datetime(2026, 2, 15, 9, tzinfo=timezone.utc))
    assert payment_the_card_fails(cycle, ENDS) == datetime(2026, 4, 15, 9, tzinfo=timezone.utc)


def test_no_warning_when_no_payment_falls_after_the_card_ends():
    active = Cycle("subscription", "active", MONTHLY, T0, datetime(2026, 2, 15, 9, tzinfo=timezone.utc))
    assert payment_the_card_fails(replace(active, cancel_at=datetime(2026, 3, 15, 9, tzinfo=timezone.utc)),
                                  ENDS) is None
    assert payment_the_card_fails(replace(active, status="cancelled"), ENDS) is None
    assert payment_the_card_fails(replace(active, status="paused"), ENDS) is None
    # Instalments 2 (Feb 15) and 3 (Mar 15) fall before the card ends: the plan is paid off by then.
    plan = Cycle("payment_plan", "active", PLAN, T0, datetime(2026, 2, 15, 9, tzinfo=timezone.utc), instalments_paid=1)
    assert payment_the_card_fails(plan, ENDS) is None
    assert payment_the_card_fails(plan, card_ends_at(2, 2026)) == datetime(2026, 3, 15, 9, tzinfo=timezone.utc)


def test_a_past_due_subscription_counts_its_retry_and_the_period_after():
    failing = Cycle("subscription", "past_due", MONTHLY, T0, datetime(2026, 3, 15, 9, tzinfo=timezone.utc),
                    failures=1, retry_at=datetime(2026, 3, 18, 9, tzinfo=timezone.utc))
    assert payment_the_card_fails(failing, ENDS) == datetime(2026, 4, 15, 9, tzinfo=timezone.utc)
    assert payment_the_card_fails(failing, card_ends_at(2, 2026)) == datetime(2026, 3, 18, 9, tzinfo=timezone.utc)


def test_the_sandbox_reads_the_expiry_typed_on_its_test_card_form():
    assert card_expiry("04/27") == (4, 2027)
    assert card_expiry(" 4 / 2031 ") == (4, 2031)
    assert card_expiry("13/27") is None and card_expiry("soon") is None
    assert card_expiry("12/9999") is None  # a year no card has: refused, never a check that cannot run
    month, year = card_expiry("")
    assert month == 12 and year > datetime.now(timezone.utc).year
