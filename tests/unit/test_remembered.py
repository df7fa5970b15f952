"""`remembered`: what a batch reads for every event is read once per transaction, and never hides
the transaction's own writes."""

import pytest
from sqlmodel import Field, Session, SQLModel

from postsale.runtime.db import create_tables, make_engine, remembered

pytestmark = pytest.mark.unit


class Setting(SQLModel, table=True):
    __tablename__ = "test_remembered_settings"
    id: str = Field(primary_key=True)
    value: str


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'remembered.db'}")
    create_tables(engine)
    yield engine
    engine.dispose()


def test_a_value_is_loaded_once_per_transaction_and_again_in_the_next(engine):
    loads = []

    def value(session: Session) -> str | None:
        def load():
            loads.append(1)
            row = session.get(Setting, "theme")
            return row.value if row else None
        return remembered(session, Setting, "theme", load)

    with Session(engine) as session:
        assert [value(session) for _ in range(5)] == [None] * 5
        assert len(loads) == 1
        session.commit()
    with Session(engine) as other:
        other.add(Setting(id="theme", value="dark"))
        other.commit()
    with Session(engine) as session:
        assert value(session) == "dark" and len(loads) == 2


def test_the_transaction_s_own_writes_are_never_hidden(engine):
    def value(session: Session) -> str | None:
        return remembered(session, Setting, "theme", lambda: getattr(session.get(Setting, "theme"), "value", None))

    with Session(engine) as session:
        assert value(session) is None
        session.add(Setting(id="theme", value="dark"))  # added: forgotten
        assert value(session) == "dark"
        session.get(Setting, "theme").value = "light"  # changed: forgotten
        assert value(session) == "light"
        session.get(Setting, "theme").value = "blue"
        session.flush()
        assert value(session) == "blue"
        assert value(session) == "blue"
        session.delete(session.get(Setting, "theme"))  # deleted: forgotten (read after the flush)
        session.flush()
        assert value(session) is None
