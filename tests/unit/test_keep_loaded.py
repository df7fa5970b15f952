"""`keep_loaded`: a store's settings and catalogue, once loaded, are not read again by the same
session, however the code holds them; other rows are held as SQLAlchemy holds them."""

import pytest
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel

from postsale.runtime.db import create_tables, keep_loaded, make_engine

pytestmark = pytest.mark.unit


class KeptOffer(SQLModel, table=True):
    __tablename__ = "test_kept_offers"
    id: str = Field(primary_key=True)
    name: str


class PlainRow(SQLModel, table=True):
    __tablename__ = "test_plain_rows"
    id: str = Field(primary_key=True)
    name: str


keep_loaded(KeptOffer)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.db'}")
    create_tables(engine)
    with Session(engine) as session:
        session.add(KeptOffer(id="o1", name="Course"))
        session.add(PlainRow(id="r1", name="Row"))
        session.commit()
    yield engine
    engine.dispose()


def selects(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement) if statement.startswith("SELECT") else None)
    return seen


def test_a_kept_row_is_read_once_per_session_even_when_nobody_holds_it(engine):
    seen = selects(engine)
    with Session(engine) as session:
        # Each name is read and the row dropped at once, as `session.get(Offer, id).name` does.
        assert [session.get(KeptOffer, "o1").name for _ in range(3)] == ["Course"] * 3
        assert [session.get(PlainRow, "r1").name for _ in range(3)] == ["Row"] * 3
    assert sum("test_kept_offers" in s for s in seen) == 1
    assert sum("test_plain_rows" in s for s in seen) == 3  # SQLAlchemy's weak identity map, unchanged
    with Session(engine) as session:
        assert session.get(KeptOffer, "o1").name == "Course"
    assert sum("test_kept_offers" in s for s in seen) == 2  # a new session reads it again


def test_a_kept_row_written_in_the_session_is_kept_and_a_commit_still_expires_it(engine):
    seen = selects(engine)
    with Session(engine) as session:
        session.add(KeptOffer(id="o2", name="Club"))
        session.flush()
        assert session.get(KeptOffer, "o2").name == "Club"
        assert not [s for s in seen if "test_kept_offers" in s]
        session.commit()
        with Session(engine) as other:
            other.get(KeptOffer, "o2").name = "Club+"
            other.commit()
        assert session.get(KeptOffer, "o2").name == "Club+"  # expired by the commit: read again
