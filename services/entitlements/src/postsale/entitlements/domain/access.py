"""The access ledger's rules: current access is the newest entry per product."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal

Action = Literal["grant", "revoke"]


@dataclass(frozen=True)
class LedgerEntry:
    product_id: str
    action: Action
    at: datetime
    expires_at: datetime | None = None


def has_access(entries: Iterable[LedgerEntry], product_id: str, now: datetime) -> bool:
    """True when the newest entry for the product is an unexpired grant."""
    newest = max((e for e in entries if e.product_id == product_id), key=lambda e: e.at, default=None)
    if newest is None or newest.action != "grant":
        return False
    return newest.expires_at is None or newest.expires_at > now


def accessible_products(entries: Iterable[LedgerEntry], now: datetime) -> set[str]:
    entries = list(entries)
    return {e.product_id for e in entries if has_access(entries, e.product_id, now)}
