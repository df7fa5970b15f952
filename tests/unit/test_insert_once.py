"""`insert_once`: a row written once per event goes in as one statement with the model's defaults,
and a second one with the same key changes nothing, in the same transaction or a later one.
With `keep`, the inserted row joins the session as if read: found without a read, changed by an
UPDATE. `upsert`: one statement too; a second one with the same key sets only the columns it names."""

from datetime import datetime

import pytest
from sqlalchemy import JSON, Column, event
from sqlmodel import Field, Session, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import create_tables, insert_once, make_engine, upsert

pytestmark = pytest.mark.unit


class OnceRow(SQLModel, table=True):
    __tablename__ = "test_once_rows"
    key: str = Field(primary_key=True)
    name: str
    status: str = "queued"
    items: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def statements(engine) -> list[str]:
    """The first word of each statement sent to the database."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2].split()[0]))
    return sent


def test_a_new_key_is_inserted_with_the_defaults_and_a_known_one_changes_nothing(engine, statements):
    with Session(engine) as session:
        assert insert_once(session, OnceRow(key="k1", name="first", items=[{"a": 1}]))
        assert not insert_once(session, OnceRow(key="k1", name="second"))  # same transaction
        session.commit()
    assert statements == ["INSERT", "INSERT"]  # no read of the key first, no flush
    with Session(engine) as session:
        assert not insert_once(session, OnceRow(key="k1", name="third"))  # a later one
        session.commit()
        row = session.get(OnceRow, "k1")
        assert (row.name, row.status, row.items) == ("first", "queued", [{"a": 1}])
        assert row.created_at is not None


def test_a_kept_row_is_found_without_a_read_and_its_change_is_an_update(engine, statements):
    with Session(engine) as session:
        row = OnceRow(key="k1", name="first")
        assert insert_once(session, row, keep=True)
        assert session.get(OnceRow, "k1") is row
        row.status = "sent"
        session.commit()
        assert not insert_once(session, OnceRow(key="k1", name="again"), keep=True)
    assert statements == ["INSERT", "UPDATE", "INSERT"]
    with Session(engine) as session:
        assert (session.get(OnceRow, "k1").name, session.get(OnceRow, "k1").status) == ("first", "sent")


def test_an_upsert_inserts_a_new_key_and_sets_only_the_named_columns_of_a_known_one(engine, statements):
    with Session(engine) as session:
        upsert(session, OnceRow(key="k1", name="first", status="failed", items=[1]), ("status",))
        upsert(session, OnceRow(key="k1", name="second", status="sent", items=[2]), ("status",))
        upsert(session, OnceRow(key="k2", name="other"), ("status",))
        session.commit()
    assert statements == ["INSERT", "INSERT", "INSERT"]
    with Session(engine) as session:
        rows = {row.key: (row.name, row.status, row.items) for row in session.query(OnceRow).all()}
    assert rows == {"k1": ("first", "sent", [1]), "k2": ("other", "queued", [])}
