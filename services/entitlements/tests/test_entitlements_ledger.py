from datetime import datetime, timedelta, timezone

import pytest

from postsale.entitlements.domain.access import LedgerEntry, current_grants

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def test_the_newest_entry_per_product_decides():
    granted_again = LedgerEntry("e3", "course", "grant", NOW - timedelta(days=1))
    entries = [
        LedgerEntry("e1", "course", "grant", NOW - timedelta(days=3)),
        LedgerEntry("e2", "course", "revoke", NOW - timedelta(days=2)),
        granted_again,
        LedgerEntry("e4", "ebook", "grant", NOW - timedelta(days=3)),
        LedgerEntry("e5", "ebook", "revoke", NOW - timedelta(days=1)),
    ]
    assert current_grants(entries, NOW) == {"course": granted_again}


def test_a_grant_for_n_days_ends_by_itself():
    grant = LedgerEntry("e1", "course", "grant", NOW - timedelta(days=31), expires_at=NOW - timedelta(days=1))
    assert current_grants([grant], NOW) == {}
    assert current_grants([grant], NOW - timedelta(days=2)) == {"course": grant}


def test_the_database_allows_one_grant_per_product_of_a_purchase(tmp_path):
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import Session

    from postsale.entitlements.adapters.tables import AccessEntry
    from postsale.entitlements.config import MIGRATIONS_DIR
    from postsale.runtime.db import make_engine
    from postsale.runtime.migrations import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    migrate(engine, MIGRATIONS_DIR)

    def grant(entry_id: str, cause: str, action: str = "grant") -> AccessEntry:
        return AccessEntry(id=entry_id, customer_id="cus_1", email="a@example.com", product_id="course",
                           action=action, reason="purchase", actor="customer", cause_event_id=cause,
                           purchase_id="pur_1")

    with Session(engine) as session:
        session.add_all([grant("e1", "evt-1"), grant("e2", "evt-2", action="revoke")])
        session.commit()
        session.add(grant("e3", "evt-3"))  # the same purchase again, under another event id
        with pytest.raises(IntegrityError):
            session.commit()
