"""The inbox makes a consumer's effect happen once per event id, on a real SQLite database."""

import pytest
from sqlmodel import Field, Session, SQLModel, select

from postsale.contracts import ProductPublished
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.messaging.consumer import RetryPolicy, apply_once

pytestmark = pytest.mark.unit


class Effect(SQLModel, table=True):
    __tablename__ = "test_effects"
    id: int | None = Field(default=None, primary_key=True)
    product_id: str


EVENT = ProductPublished(product_id="prod_1", name="n", delivery_type="none",
                         published_at="2026-11-22T10:00:00+00:00")


def record_effect(session: Session, event: ProductPublished, _event_id: str) -> None:
    session.add(Effect(product_id=event.product_id))


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    create_tables(engine)
    return engine


def effects(engine) -> list[str]:
    with Session(engine) as session:
        return [e.product_id for e in session.exec(select(Effect)).all()]


def test_a_redelivered_event_changes_nothing(engine):
    assert apply_once(engine, "svc:topic", record_effect, EVENT, "evt-1") is True
    assert apply_once(engine, "svc:topic", record_effect, EVENT, "evt-1") is False
    assert effects(engine) == ["prod_1"]


def test_another_consumer_of_the_same_event_applies_its_own_effect(engine):
    apply_once(engine, "a:topic", record_effect, EVENT, "evt-1")
    apply_once(engine, "b:topic", record_effect, EVENT, "evt-1")
    assert effects(engine) == ["prod_1", "prod_1"]


def test_a_failed_handler_leaves_no_inbox_row_so_the_retry_runs(engine):
    def fails(session, event, event_id):
        session.add(Effect(product_id="half-done"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        apply_once(engine, "svc:topic", fails, EVENT, "evt-2")
    assert apply_once(engine, "svc:topic", record_effect, EVENT, "evt-2") is True
    assert effects(engine) == ["prod_1"]


def test_retries_back_off_and_are_bounded():
    policy = RetryPolicy(attempts=4, first_delay=0.2, max_delay=0.5)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.5]
