"""The access policy, as pure functions of what is known about a grant and of the time.

A grant is one product from one source: a purchase (with the subscription or payment plan it
started), or the seller's manual grant. What checkout tells about the source (refunds, disputes,
the billing's cancellation and pauses) and the seller's revokes are kept as facts, each with its
own time. A grant's state is worked out from all of them under the purchase's policy, never from
the last event alone, so events may arrive late, twice or out of order:

- facts that undo one another (a pause and a resume, a cancellation and its undoing) count by
  their own time: the newest wins, whichever arrived last;
- a dispute that was won or lost stays closed, even when its opening arrives afterwards;
- the first thing that ended a grant (a revoke, or the end of its access period) is why it ended.

A product is available while any of its grants is active (`available`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Literal

Status = Literal["active", "suspended", "revoked", "expired"]
Action = Literal["grant", "revoke", "suspend", "restore", "expire"]
FactKind = Literal[
    "full_refund", "partial_refund",
    "dispute_opened", "dispute_won", "dispute_lost",
    "cancellation_scheduled", "cancellation_undone", "subscription_cancelled",
    "paused", "resumed", "past_due",
    "seller_revoke", "reconciliation_revoke",
]

PURCHASE = "purchase"
GRANTED_BY_SELLER = "granted by the seller"
RECONCILIATION = "reconciliation"
ACCESS_PERIOD_ENDED = "access period ended"
RESTORED = "restored"

# What each fact is called in the ledger: words a seller reads.
REASONS: dict[str, str] = {
    "full_refund": "full refund",
    "partial_refund": "partial refund",
    "dispute_opened": "dispute opened",
    "dispute_won": "dispute won",
    "dispute_lost": "dispute lost",
    "cancellation_scheduled": "subscription cancelled",
    "cancellation_undone": "cancellation undone",
    "subscription_cancelled": "subscription cancelled",
    "paused": "subscription paused",
    "resumed": "subscription resumed",
    "past_due": "payment past due",
    "seller_revoke": "revoked by the seller",
    "reconciliation_revoke": "reconciliation",
}
PAYMENT_FAILED = "payment failed"


@dataclass(frozen=True)
class Policy:
    """An offer's access policy (`AccessPolicy` in the contracts); the defaults are Postsale's."""

    access_days: int | None = None
    on_cancel: Literal["period_end", "now"] = "period_end"
    on_pause: Literal["keep", "suspend"] = "keep"
    on_partial_refund: Literal["keep", "revoke"] = "keep"

    def expires_at(self, granted_at: datetime) -> datetime | None:
        """When access for N days, counted from the purchase, ends; None: for good."""
        return granted_at + timedelta(days=self.access_days) if self.access_days else None


@dataclass(frozen=True)
class Fact:
    """Something that happened to a grant's source, at its own time (the event's, not arrival's)."""

    id: str
    kind: FactKind
    at: datetime
    key: str = ""  # the dispute it is about
    effective_at: datetime | None = None  # a cancelled billing, or a revoke as of a date: when it ends
    detail: str | None = None  # the event's own reason, e.g. "payment failed"
    received_at: datetime | None = None  # when entitlements learnt of it

    @property
    def reason(self) -> str:
        if self.kind == "subscription_cancelled" and (self.detail or "").lower() == PAYMENT_FAILED:
            return PAYMENT_FAILED
        return REASONS[self.kind]


@dataclass(frozen=True)
class AccessState:
    status: Status
    reason: str | None = None  # why it is not active
    decided_by: Fact | None = None  # the fact behind a revoke or a suspension
    ends_at: datetime | None = None  # when active or suspended access ends by itself; None: it will not
    ends_because: str | None = None  # and why it will
    ended_at: datetime | None = None  # when revoked or expired access ended


# Among facts at the same instant, the order in which they count.
_ORDER = {kind: n for n, kind in enumerate(REASONS)}


def _newest(facts: Iterable[Fact]) -> Fact | None:
    return max(facts, key=lambda f: (f.at, _ORDER[f.kind], f.id), default=None)


def _disputes(facts: list[Fact]) -> dict[str, Fact]:
    """Each dispute's outcome: its closing (won or lost) once there is one, else its opening."""
    outcome: dict[str, Fact] = {}
    for key in {f.key for f in facts if f.kind.startswith("dispute_")}:
        about = [f for f in facts if f.key == key and f.kind.startswith("dispute_")]
        closed = [f for f in about if f.kind != "dispute_opened"]
        outcome[key] = _newest(closed) or _newest(about)  # type: ignore[assignment]
    return outcome


def _revocations(facts: list[Fact], policy: Policy) -> list[tuple[datetime, Fact, bool]]:
    """Each fact that revokes: when it takes effect, and whether that time is a schedule to wait
    for. Only a billing that ends on its date is one; any other revoke counts as soon as it is
    known, whatever the clocks of the services say."""
    found: list[tuple[datetime, Fact, bool]] = []
    for fact in facts:
        if fact.kind == "seller_revoke" and fact.effective_at is not None and fact.effective_at > fact.at:
            found.append((fact.effective_at, fact, True))  # the seller revoked as of a later date
        elif fact.kind in ("full_refund", "seller_revoke", "reconciliation_revoke") or \
                (fact.kind == "partial_refund" and policy.on_partial_refund == "revoke"):
            found.append((fact.at, fact, False))
        elif fact.kind == "subscription_cancelled":
            if policy.on_cancel == "now":  # access ends when the cancellation is asked for
                found.append((min(fact.at, fact.effective_at or fact.at), fact, False))
            else:
                found.append((_billing_end(fact), fact, True))
    found += [(f.at, f, False) for f in _disputes(facts).values() if f.kind == "dispute_lost"]
    cancellation = _newest(f for f in facts if f.kind in ("cancellation_scheduled", "cancellation_undone"))
    if cancellation is not None and cancellation.kind == "cancellation_scheduled" and policy.on_cancel == "now":
        found.append((cancellation.at, cancellation, False))
    return sorted(found, key=lambda item: (item[0], _ORDER[item[1].kind], item[1].id))


def _billing_end(fact: Fact) -> datetime:
    """When a cancelled billing ends access: at its effective time, but never later than the
    publisher's own lead (from cancelling to effective) after we learnt of it. So a publisher
    whose clock runs ahead (the sandbox's lifecycle simulator moves a test customer's time) does
    not push the end into our future."""
    ends = fact.effective_at or fact.at
    if fact.received_at is not None:
        ends = min(ends, fact.received_at + max(ends - fact.at, timedelta(0)))
    return ends


def _suspensions(facts: list[Fact], policy: Policy) -> list[Fact]:
    found = [f for f in _disputes(facts).values() if f.kind == "dispute_opened"]
    pause = _newest(f for f in facts if f.kind in ("paused", "resumed"))
    if pause is not None and pause.kind == "paused" and policy.on_pause == "suspend":
        found.append(pause)
    return sorted(found, key=lambda f: (f.at, _ORDER[f.kind], f.id))


def access_state(facts: Iterable[Fact], policy: Policy, now: datetime, *,
                 expires_at: datetime | None = None) -> AccessState:
    """The state of a grant at `now`: revoked or expired (whichever came first), else suspended,
    else active. A past-due billing keeps access: only its cancellation (when dunning gives up)
    revokes it."""
    facts = list(facts)
    revocations = _revocations(facts, policy)
    due = [(at, fact) for at, fact, scheduled in revocations if not scheduled or at <= now]
    if expires_at is not None and expires_at <= now and (not due or expires_at < due[0][0]):
        return AccessState("expired", ACCESS_PERIOD_ENDED, ended_at=expires_at)
    if due:
        at, fact = due[0]
        return AccessState("revoked", fact.reason, fact, ended_at=at)
    ends = [(at, fact.reason) for at, fact, _ in revocations]
    if expires_at is not None:
        ends.append((expires_at, ACCESS_PERIOD_ENDED))
    ends_at, ends_because = min(ends, default=(None, None))
    suspensions = _suspensions(facts, policy)
    if suspensions:
        return AccessState("suspended", suspensions[0].reason, suspensions[0], ends_at, ends_because)
    return AccessState("active", ends_at=ends_at, ends_because=ends_because)


@dataclass(frozen=True)
class Change:
    action: Action
    reason: str


_ACTIONS: dict[Status, Action] = {"revoked": "revoke", "suspended": "suspend", "expired": "expire"}


def change(before: Status, after: AccessState, trigger: Fact | None = None) -> Change | None:
    """The ledger entry that takes a grant from `before` to `after`, or None when nothing changes.
    Access that comes back is restored for the reason of the fact that brought it back."""
    if before == after.status:
        return None
    if after.status == "active":
        return Change("restore", trigger.reason if trigger is not None else RESTORED)
    return Change(_ACTIONS[after.status], after.reason or after.status)


@dataclass(frozen=True)
class GrantView:
    """What the availability of a product is decided on: one of its grants, as it stands now."""

    grant_id: str
    product_id: str
    status: Status
    ends_at: datetime | None = None


def is_active(grant: GrantView, now: datetime) -> bool:
    """Active, and not past the time it ends by itself (which the scheduler is about to record)."""
    return grant.status == "active" and (grant.ends_at is None or grant.ends_at > now)


def available(grants: Iterable[GrantView], now: datetime) -> dict[str, list[GrantView]]:
    """Per product the customer may use now, the active grants that give it. A product is
    available while any of its grants is: revoking one source never removes what another gives."""
    out: dict[str, list[GrantView]] = {}
    for grant in grants:
        if is_active(grant, now):
            out.setdefault(grant.product_id, []).append(grant)
    return out
