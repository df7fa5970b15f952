"""The access ledger's rules: per product, the newest entry decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal

Action = Literal["grant", "revoke"]


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: str
    product_id: str
    action: Action
    at: datetime
    expires_at: datetime | None = None


def current_grants(entries: Iterable[LedgerEntry], now: datetime) -> dict[str, LedgerEntry]:
    """Per product the customer may use now, the grant that gives it: the product's newest
    entry, when that entry is a grant that has not expired."""
    newest: dict[str, LedgerEntry] = {}
    for entry in entries:
        if entry.product_id not in newest or entry.at >= newest[entry.product_id].at:
            newest[entry.product_id] = entry
    return {
        product_id: entry for product_id, entry in newest.items()
        if entry.action == "grant" and (entry.expires_at is None or entry.expires_at > now)
    }
