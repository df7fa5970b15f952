"""Reconciliation, as pure functions: what the purchase events said against the grants there are.

For each product of each purchase entitlements received, the access policy applied to what is
known about the purchase (its refunds, disputes, billing) says whether the customer should have
it now; the current-access row says whether they do. Two kinds of mismatch are reported, each
with its cause in words:

- paid without access: the policy says active, but there is no grant, or it is not active;
- access without payment: a purchase's grant is active, but the policy says it should have
  ended, or no purchase (or no such product in it) was ever received.

A seller's manual grants are theirs to give and are not compared. A grant whose own scheduled end
(`ends_at`: an access period, a billing's end) passed less than `GRACE` ago is left to the
scheduler, which is about to record it; any other end (a refund, a dispute) counts at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Literal

from postsale.entitlements.domain.access import Fact, GrantView, Policy, access_state, is_active

GRACE = timedelta(minutes=15)
Kind = Literal["paid_without_access", "access_without_payment"]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    customer_id: str
    product_id: str
    purchase_id: str | None
    grant_id: str | None
    expected: str  # active, or the status the policy gives: revoked, expired, suspended
    actual: str  # the grant's status, or "missing"
    cause: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "customer_id": self.customer_id, "product_id": self.product_id,
                "purchase_id": self.purchase_id, "grant_id": self.grant_id, "expected": self.expected,
                "actual": self.actual, "cause": self.cause}


@dataclass(frozen=True)
class GrantSnapshot:
    id: str
    product_id: str
    status: str
    reason: str
    expires_at: datetime | None
    ends_at: datetime | None


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


def compare_purchase(*, customer_id: str, purchase_id: str, completed_at: datetime, policy: Policy,
                     products: Iterable[str], grants: Iterable[GrantSnapshot], facts: Iterable[Fact],
                     now: datetime) -> list[Finding]:
    """The mismatches between one purchase (the products it bought, what happened to it) and its grants."""
    facts = list(facts)
    by_product = {g.product_id: g for g in grants}
    bought = list(dict.fromkeys(products))
    found: list[Finding] = []
    for product_id in bought:
        grant = by_product.get(product_id)
        expires_at = grant.expires_at if grant is not None else policy.expires_at(completed_at)
        expected = access_state(facts, policy, now, expires_at=expires_at)
        if grant is None:
            if expected.status == "active":
                found.append(Finding("paid_without_access", customer_id, product_id, purchase_id, None, "active",
                                     "missing", "no grant was recorded for this product of the purchase"))
            continue
        has_it = is_active(GrantView(grant.id, grant.product_id, grant.status, grant.ends_at), now)  # type: ignore[arg-type]
        if expected.status == "active" and not has_it and grant.status != "active":
            found.append(Finding("paid_without_access", customer_id, product_id, purchase_id, grant.id, "active",
                                 grant.status, f"the grant is {grant.status} ({grant.reason}), but nothing the "
                                               "purchase's events say ends or holds it"))
        elif expected.status != "active" and grant.status == "active":
            if grant.ends_at is not None and grant.ends_at <= now < grant.ends_at + GRACE:
                continue  # its own scheduled end passed a moment ago: the scheduler records it
            why = expected.reason or expected.status
            when = expected.ended_at or (expected.decided_by.at if expected.decided_by else None)
            found.append(Finding("access_without_payment", customer_id, product_id, purchase_id, grant.id,
                                 expected.status, "active",
                                 f"{why} on {_day(when)} should have {_verb(expected.status)} the grant, "
                                 "but it is still active"))
    for product_id, grant in by_product.items():
        if product_id not in bought and grant.status == "active":
            found.append(Finding("access_without_payment", customer_id, product_id, purchase_id, grant.id,
                                 "revoked", "active", "the purchase did not buy this product"))
    return found


def _verb(status: str) -> str:
    return {"revoked": "revoked", "expired": "ended", "suspended": "suspended"}.get(status, status)


def orphan_grant(customer_id: str, grant: GrantSnapshot, purchase_id: str) -> Finding:
    """An active grant of a purchase entitlements never received."""
    return Finding("access_without_payment", customer_id, grant.product_id, purchase_id, grant.id, "revoked",
                   "active", f"no purchase {purchase_id} was ever received for this grant")
