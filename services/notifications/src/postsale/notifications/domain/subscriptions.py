"""A subscription's standing as notifications follows it from checkout's events: pure
transitions, each taking the moment its fact happened.

Checkout's events of one customer arrive in order (one topic, keyed by customer), but the
purchase that started a subscription arrives on another topic, and a dead letter can be replayed
late: a fact older than the newest one applied changes nothing, and an ended subscription stays
ended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

Status = Literal["trialing", "active", "past_due", "paused", "cancelled", "completed"]
ENDED: frozenset[str] = frozenset({"cancelled", "completed"})


@dataclass(frozen=True)
class Standing:
    status: Status
    changed_at: datetime
    cancel_at: datetime | None = None  # a scheduled cancellation, until undone
    last_paused_at: datetime | None = None


def started(at: datetime, *, trial_ends_at: datetime | None) -> Standing:
    """The purchase that starts it: in its free trial, or paid for its first period."""
    return Standing("trialing" if trial_ends_at is not None and trial_ends_at > at else "active", at)


def _later(standing: Standing, at: datetime) -> bool:
    return standing.status not in ENDED and at >= standing.changed_at


def paid(standing: Standing, at: datetime, *, last_instalment: bool = False) -> Standing:
    if not _later(standing, at):
        return standing
    return replace(standing, status="completed" if last_instalment else "active", changed_at=at)


def payment_failed(standing: Standing, at: datetime) -> Standing:
    if not _later(standing, at) or standing.status == "paused":
        return standing
    return replace(standing, status="past_due", changed_at=at)


def cancellation_scheduled(standing: Standing, at: datetime, *, effective_at: datetime) -> Standing:
    return replace(standing, cancel_at=effective_at, changed_at=at) if _later(standing, at) else standing


def cancellation_undone(standing: Standing, at: datetime) -> Standing:
    return replace(standing, cancel_at=None, changed_at=at) if _later(standing, at) else standing


def cancelled(standing: Standing, at: datetime) -> Standing:
    return replace(standing, status="cancelled", changed_at=at) if _later(standing, at) else standing


def paused(standing: Standing, at: datetime) -> Standing:
    if not _later(standing, at):
        return standing
    return replace(standing, status="paused", changed_at=at, last_paused_at=at)


def resumed(standing: Standing, at: datetime) -> Standing:
    return replace(standing, status="active", changed_at=at) if _later(standing, at) else standing
