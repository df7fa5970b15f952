from datetime import datetime, timedelta, timezone

import pytest

from postsale.entitlements.domain.access import LedgerEntry, accessible_products, has_access

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def test_the_newest_entry_decides():
    entries = [
        LedgerEntry("course", "grant", NOW - timedelta(days=3)),
        LedgerEntry("course", "revoke", NOW - timedelta(days=2)),
        LedgerEntry("course", "grant", NOW - timedelta(days=1)),
        LedgerEntry("ebook", "grant", NOW - timedelta(days=3)),
        LedgerEntry("ebook", "revoke", NOW - timedelta(days=1)),
    ]
    assert has_access(entries, "course", NOW)
    assert not has_access(entries, "ebook", NOW)
    assert not has_access(entries, "never-bought", NOW)
    assert accessible_products(entries, NOW) == {"course"}


def test_a_grant_for_n_days_ends_by_itself():
    entries = [LedgerEntry("course", "grant", NOW - timedelta(days=31), expires_at=NOW - timedelta(days=1))]
    assert not has_access(entries, "course", NOW)
    assert has_access(entries, "course", NOW - timedelta(days=2))
