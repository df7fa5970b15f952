"""The life of a subscription or payment plan after its first payment, as pure decisions.

States: `trialing`, `active`, `past_due`, `paused`, `cancelled`, and `completed` (a payment plan
whose instalments are all paid). Handlers load a `Cycle`, ask one of these functions what
happens at `now` (always passed in: the clock is injectable), store the result and publish it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from postsale.checkout.domain.billing import BillingTerms

Status = Literal["trialing", "active", "past_due", "paused", "cancelled", "completed"]
# Retries after a failed renewal, counted from the first failure (the store may set its own).
DEFAULT_RETRY_DAYS = (3, 5, 7)
# Declines that no retry can fix: the card is gone.
HARD_DECLINES = ("lost", "stolen", "closed", "revoked", "pickup")
LIVE: frozenset[str] = frozenset({"trialing", "active", "past_due"})


@dataclass(frozen=True)
class SelfService:
    """What a customer may do on the billing page, per offer; all on by default. A payment plan is
    never cancelled by the customer, whatever this says."""

    cancel: bool = True
    update_card: bool = True
    receipts: bool = True


class BillingError(ValueError):
    """A change the subscription's state does not allow, in words for the seller or customer."""


@dataclass(frozen=True)
class Cycle:
    kind: Literal["subscription", "payment_plan"]
    status: Status
    terms: BillingTerms
    period_start: datetime
    period_end: datetime
    instalments_paid: int = 0
    cancel_at: datetime | None = None  # a pending cancellation takes effect then
    failed_since: datetime | None = None  # the first failure of the current charge
    failures: int = 0  # failed attempts of the current charge
    retry_at: datetime | None = None  # past due: when the charge is tried again
    paused_at: datetime | None = None

    @property
    def next_charge_at(self) -> datetime | None:
        """When the next renewal, instalment or retry is charged; None when none will be."""
        if self.status == "past_due":
            return self.retry_at
        if self.status not in LIVE or (self.cancel_at is not None and self.cancel_at <= self.period_end):
            return None
        return self.period_end

    @property
    def next_event_at(self) -> datetime | None:
        """When the scheduler must look at this cycle next: a charge, or a pending cancellation."""
        moments = [m for m in (self.next_charge_at, self.cancel_at if self.status not in ("cancelled", "completed")
                                else None) if m is not None]
        return min(moments) if moments else None


@dataclass(frozen=True)
class ChargeDue:
    """The cycle's next payment is due now."""

    period_start: datetime
    period_end: datetime
    instalment_number: int | None


def due(cycle: Cycle, now: datetime) -> ChargeDue | Literal["cancel"] | None:
    """What the scheduler does for this cycle at `now`: charge the next period, end a pending
    cancellation, or nothing (paused, cancelled, completed, or not yet time)."""
    if cycle.cancel_at is not None and now >= cycle.cancel_at and cycle.status in LIVE | {"paused"}:
        return "cancel"
    if cycle.status == "past_due" and cycle.retry_at is not None and now >= cycle.retry_at:
        number = cycle.instalments_paid + 1 if cycle.kind == "payment_plan" else None
        return ChargeDue(cycle.period_end, cycle.terms.period_end(cycle.period_end), number)
    if cycle.status not in ("trialing", "active") or now < cycle.period_end:
        return None
    if cycle.cancel_at is not None and cycle.cancel_at <= cycle.period_end:
        return "cancel"
    number = cycle.instalments_paid + 1 if cycle.kind == "payment_plan" else None
    return ChargeDue(cycle.period_end, cycle.terms.period_end(cycle.period_end), number)


def charge_succeeded(cycle: Cycle, charge: ChargeDue) -> Cycle:
    """The period is paid: it becomes the current one; a plan's last instalment completes it."""
    paid = cycle.instalments_paid + (1 if cycle.kind == "payment_plan" else 0)
    done = cycle.kind == "payment_plan" and paid >= (cycle.terms.instalments or 0)
    return replace(cycle, status="completed" if done else "active", period_start=charge.period_start,
                   period_end=charge.period_end, instalments_paid=paid, failed_since=None, failures=0, retry_at=None)


@dataclass(frozen=True)
class Failure:
    cycle: Cycle
    next_retry_at: datetime | None  # None: dunning gives up, the billing is cancelled


def charge_failed(cycle: Cycle, now: datetime, *, message: str,
                  retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS) -> Failure:
    """A renewal or instalment failed: past due, access kept, retried on the schedule counted
    from the first failure; a hard decline or the last retry ends it."""
    first = cycle.failed_since or now
    failures = cycle.failures + 1
    hard = any(word in message.lower() for word in HARD_DECLINES)
    retry_at = first + timedelta(days=retry_days[failures - 1]) if failures <= len(retry_days) and not hard else None
    return Failure(replace(cycle, status="past_due", failed_since=first, failures=failures, retry_at=retry_at),
                   retry_at)


def cancel(cycle: Cycle, now: datetime, *, when: Literal["now", "period_end", "date"],
           at: datetime | None = None, by_customer: bool = False) -> Cycle:
    """Asks for a cancellation: now, at the end of the paid period, or on a chosen date."""
    if cycle.status in ("cancelled", "completed"):
        raise BillingError(f"This {_name(cycle)} has already ended.")
    if by_customer and cycle.kind == "payment_plan":
        raise BillingError("A payment plan cannot be cancelled by the customer; contact the seller.")
    if when == "now":
        return replace(cycle, status="cancelled", cancel_at=now)
    if when == "period_end":
        return replace(cycle, cancel_at=cycle.period_end)
    if at is None or at <= now:
        raise BillingError("Choose a cancellation date in the future.")
    return replace(cycle, cancel_at=at)


def undo_cancel(cycle: Cycle) -> Cycle:
    if cycle.status in ("cancelled", "completed") or cycle.cancel_at is None:
        raise BillingError(f"This {_name(cycle)} has no pending cancellation to undo.")
    return replace(cycle, cancel_at=None)


def pause(cycle: Cycle, now: datetime) -> Cycle:
    if cycle.status not in LIVE:
        raise BillingError(f"Only a running {_name(cycle)} can be paused.")
    return replace(cycle, status="paused", paused_at=now, retry_at=None)


def resume(cycle: Cycle, now: datetime) -> Cycle:
    """Billing goes on from now: what was left of the paid period when it paused is kept, and the
    paused time is never charged (a charge that was failing is tried again at once)."""
    if cycle.status != "paused":
        raise BillingError(f"This {_name(cycle)} is not paused.")
    left = max(cycle.period_end - (cycle.paused_at or now), timedelta(0))
    if cycle.failures:
        left = timedelta(0)
    return replace(cycle, status="active", period_start=now, period_end=now + left, paused_at=None,
                   failed_since=None, failures=0)


def _name(cycle: Cycle) -> str:
    return "payment plan" if cycle.kind == "payment_plan" else "subscription"
