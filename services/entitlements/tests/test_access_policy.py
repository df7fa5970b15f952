"""The access policy as pure functions: facts and the clock in, the state of a grant out."""

from datetime import datetime, timedelta, timezone

import pytest

from postsale.entitlements.domain.access import (Change, Fact, GrantView, Policy, access_state, available,
                                                 change)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
DEFAULTS = Policy()


def fact(kind: str, minutes: float, **fields) -> Fact:
    at = T0 + timedelta(minutes=minutes)
    return Fact(id=f"{kind}@{minutes}", kind=kind, at=at, **fields)  # type: ignore[arg-type]


def status(facts: list[Fact], policy: Policy = DEFAULTS, *, minutes: float = 60, **kwargs) -> str:
    return access_state(facts, policy, T0 + timedelta(minutes=minutes), **kwargs).status


# --- one-time purchases and refunds ---------------------------------------------------------


def test_a_paid_purchase_gives_access_for_good():
    state = access_state([], DEFAULTS, T0 + timedelta(days=3650))
    assert (state.status, state.ends_at) == ("active", None)


def test_access_for_n_days_ends_by_itself_counted_from_the_purchase():
    expires_at = Policy(access_days=30).expires_at(T0)
    assert expires_at == T0 + timedelta(days=30)
    before = access_state([], DEFAULTS, expires_at - timedelta(seconds=1), expires_at=expires_at)
    assert (before.status, before.ends_at, before.ends_because) == ("active", expires_at, "access period ended")
    after = access_state([], DEFAULTS, expires_at, expires_at=expires_at)
    assert (after.status, after.reason, after.ended_at) == ("expired", "access period ended", expires_at)
    assert change("active", after) == Change("expire", "access period ended")


def test_a_full_refund_revokes_at_once():
    state = access_state([fact("full_refund", 5)], DEFAULTS, T0 + timedelta(minutes=5))
    assert (state.status, state.reason) == ("revoked", "full refund")
    assert change("active", state) == Change("revoke", "full refund")


def test_a_full_refund_stamped_a_little_ahead_of_our_clock_still_revokes_when_it_arrives():
    assert status([fact("full_refund", 5)], minutes=4) == "revoked"


def test_a_partial_refund_keeps_access_unless_the_offer_revokes_on_it():
    assert status([fact("partial_refund", 5)]) == "active"
    assert status([fact("partial_refund", 5)], Policy(on_partial_refund="revoke")) == "revoked"


# --- disputes ---------------------------------------------------------------------------------


def test_a_dispute_suspends_then_restores_when_won_or_revokes_when_lost():
    opened = fact("dispute_opened", 5, key="dp_1")
    suspended = access_state([opened], DEFAULTS, T0 + timedelta(minutes=6))
    assert (suspended.status, suspended.reason) == ("suspended", "dispute opened")
    assert change("active", suspended, opened) == Change("suspend", "dispute opened")

    won = fact("dispute_won", 30, key="dp_1")
    restored = access_state([opened, won], DEFAULTS, T0 + timedelta(minutes=31))
    assert restored.status == "active"
    assert change("suspended", restored, won) == Change("restore", "dispute won")

    lost = fact("dispute_lost", 30, key="dp_1")
    revoked = access_state([opened, lost], DEFAULTS, T0 + timedelta(minutes=31))
    assert change("suspended", revoked, lost) == Change("revoke", "dispute lost")


def test_a_dispute_won_before_its_opening_arrives_never_ends_suspended():
    won, opened = fact("dispute_won", 30, key="dp_1"), fact("dispute_opened", 5, key="dp_1")
    assert status([won]) == "active"
    assert status([won, opened]) == "active"
    assert change("active", access_state([won, opened], DEFAULTS, T0 + timedelta(hours=1)), opened) is None


def test_a_dispute_lost_before_its_opening_arrives_stays_revoked():
    assert status([fact("dispute_lost", 30, key="dp_1"), fact("dispute_opened", 5, key="dp_1")]) == "revoked"


def test_one_dispute_closing_does_not_close_another():
    facts = [fact("dispute_opened", 5, key="dp_1"), fact("dispute_opened", 6, key="dp_2"),
             fact("dispute_won", 30, key="dp_1")]
    assert status(facts) == "suspended"


# --- subscriptions and payment plans -------------------------------------------------------


def test_a_scheduled_cancellation_changes_nothing_by_default():
    assert status([fact("cancellation_scheduled", 5, effective_at=T0 + timedelta(days=20))]) == "active"


def test_a_cancellation_on_a_revoke_now_policy_revokes_at_once_and_its_undoing_restores():
    now_policy = Policy(on_cancel="now")
    scheduled = fact("cancellation_scheduled", 5, effective_at=T0 + timedelta(days=20))
    revoked = access_state([scheduled], now_policy, T0 + timedelta(minutes=5))
    assert (revoked.status, revoked.reason) == ("revoked", "subscription cancelled")

    undone = fact("cancellation_undone", 10)
    restored = access_state([scheduled, undone], now_policy, T0 + timedelta(minutes=10))
    assert restored.status == "active"
    assert change("revoked", restored, undone) == Change("restore", "cancellation undone")


def test_an_older_undoing_that_arrives_late_does_not_undo_a_newer_cancellation():
    now_policy = Policy(on_cancel="now")
    facts = [fact("cancellation_undone", 5), fact("cancellation_scheduled", 10)]
    assert status(facts, now_policy) == "revoked"
    assert status([*facts, fact("cancellation_undone", 20)], now_policy) == "active"


def test_a_cancelled_billing_revokes_at_its_effective_time_and_not_before():
    ends = T0 + timedelta(days=20)
    cancelled = fact("subscription_cancelled", 5, effective_at=ends, received_at=T0 + timedelta(minutes=5))
    waiting = access_state([cancelled], DEFAULTS, ends - timedelta(seconds=1))
    assert (waiting.status, waiting.ends_at, waiting.ends_because) == ("active", ends, "subscription cancelled")
    ended = access_state([cancelled], DEFAULTS, ends)
    assert (ended.status, ended.reason, ended.ended_at, ended.decided_by) == (
        "revoked", "subscription cancelled", ends, cancelled)


def test_a_billing_cancelled_because_payments_failed_says_so():
    gave_up = fact("subscription_cancelled", 5, effective_at=T0 + timedelta(minutes=5), detail="payment failed")
    assert access_state([gave_up], DEFAULTS, T0 + timedelta(minutes=5)).reason == "payment failed"


def test_a_billing_past_due_keeps_access_while_retries_run():
    assert status([fact("past_due", 5)]) == "active"


def test_a_publisher_clock_running_ahead_does_not_push_the_end_into_our_future():
    # The sandbox's lifecycle simulator: the customer's clock is 30 days ahead of ours.
    ahead = timedelta(days=30)
    cancelled = Fact(id="c", kind="subscription_cancelled", at=T0 + ahead, effective_at=T0 + ahead, received_at=T0)
    assert access_state([cancelled], DEFAULTS, T0).status == "revoked"
    lead = Fact(id="c", kind="subscription_cancelled", at=T0 + ahead, effective_at=T0 + ahead + timedelta(hours=1),
                received_at=T0)
    assert access_state([lead], DEFAULTS, T0).ends_at == T0 + timedelta(hours=1)


def test_a_pause_keeps_access_or_suspends_it_per_policy_and_a_resume_restores_it():
    paused = fact("paused", 5)
    assert status([paused]) == "active"
    suspend = Policy(on_pause="suspend")
    suspended = access_state([paused], suspend, T0 + timedelta(minutes=6))
    assert (suspended.status, suspended.reason) == ("suspended", "subscription paused")
    resumed = fact("resumed", 20)
    back = access_state([paused, resumed], suspend, T0 + timedelta(minutes=21))
    assert change("suspended", back, resumed) == Change("restore", "subscription resumed")


def test_an_older_resume_arriving_after_a_newer_pause_leaves_it_paused():
    suspend = Policy(on_pause="suspend")
    assert status([fact("paused", 20), fact("resumed", 5)], suspend) == "suspended"


def test_a_pause_and_a_resume_at_the_same_instant_are_decided_the_same_way_whatever_their_order():
    suspend = Policy(on_pause="suspend")
    paused, resumed = fact("paused", 5), fact("resumed", 5)
    assert status([paused, resumed], suspend) == status([resumed, paused], suspend) == "active"


# --- what ends access first, and what a change is -------------------------------------------


def test_the_first_thing_that_ended_access_is_why_it_ended():
    expires_at = T0 + timedelta(days=30)
    late_refund = fact("full_refund", 60 * 24 * 40)
    assert access_state([late_refund], DEFAULTS, T0 + timedelta(days=41), expires_at=expires_at).status == "expired"
    early_refund = fact("full_refund", 5)
    assert access_state([early_refund], DEFAULTS, T0 + timedelta(days=41), expires_at=expires_at).status == "revoked"


def test_a_revoke_outranks_a_suspension():
    facts = [fact("dispute_opened", 5, key="dp_1"), fact("full_refund", 10)]
    assert status(facts) == "revoked"


def test_nothing_changes_when_the_state_stays_the_same():
    facts = [fact("full_refund", 5), fact("dispute_opened", 10, key="dp")]
    state = access_state(facts, DEFAULTS, T0 + timedelta(hours=1))
    assert change("revoked", state) is None


# --- availability by source ---------------------------------------------------------------


def test_a_product_stays_available_while_any_of_its_grants_is_active():
    now = T0 + timedelta(days=1)
    refunded = GrantView("g1", "course", "revoked")
    other_purchase = GrantView("g2", "course", "active")
    ended_period = GrantView("g3", "ebook", "active", ends_at=now)
    suspended = GrantView("g4", "club", "suspended")
    assert available([refunded, other_purchase, ended_period, suspended], now) == {"course": [other_purchase]}
    assert available([refunded], now) == {}
