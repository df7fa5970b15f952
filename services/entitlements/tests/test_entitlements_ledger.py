from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path):
    from postsale.entitlements.config import MIGRATIONS_DIR
    from postsale.runtime.db import make_engine
    from postsale.runtime.migrations import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def entry(entry_id: str, seq: int, cause: str, action: str = "grant"):
    from postsale.entitlements.adapters.tables import AccessEntry

    return AccessEntry(id=entry_id, seq=seq, customer_id="cus_1", email="a@example.com", product_id="course",
                       action=action, reason="purchase", actor="customer", cause_event_id=cause, purchase_id="pur_1")


def test_the_database_allows_one_grant_per_product_of_a_purchase(engine):
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import Session

    with Session(engine) as session:
        session.add_all([entry("e1", 1, "evt-1"), entry("e2", 2, "evt-2", action="revoke")])
        session.commit()
        session.add(entry("e3", 3, "evt-3"))  # the same purchase again, under another event id
        with pytest.raises(IntegrityError):
            session.commit()


def test_the_database_numbers_a_customers_ledger_entries_once_each(engine):
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import Session

    with Session(engine) as session:
        session.add(entry("e1", 1, "evt-1"))
        session.commit()
        session.add(entry("e2", 1, "evt-2", action="revoke"))  # two changes can never share a place
        with pytest.raises(IntegrityError):
            session.commit()
