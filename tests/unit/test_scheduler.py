"""Timed work: due rows run once, in order, each in its own transaction; a failing row is retried
later and never stalls the others; time is the scheduler's clock, not the wall's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.runtime.clock import as_utc
from postsale.runtime.db import make_engine
from postsale.runtime.scheduler import MAX_ATTEMPTS, DueRow, Scheduler, pending_index

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


class Reminder(DueRow, table=True):
    __tablename__ = "test_reminders"
    __table_args__ = (pending_index("test_reminders"),)

    text: str = ""


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'timed.db'}")
    Reminder.metadata.create_all(engine, tables=[Reminder.__table__])
    yield engine
    engine.dispose()


def add(engine, **rows: datetime) -> None:
    with Session(engine) as session:
        session.add_all(Reminder(id=name, due_at=due) for name, due in rows.items())
        session.commit()


def test_due_rows_run_once_in_order_and_future_ones_wait_for_the_clock(engine):
    add(engine, b=T0 + timedelta(hours=1), a=T0 - timedelta(minutes=1), later=T0 + timedelta(days=3))
    clock, ran = FakeClock(T0 + timedelta(hours=2)), []
    scheduler = Scheduler(engine, "reminders", Reminder, lambda s, row, now: ran.append((row.id, now)), clock=clock)
    assert scheduler.run_due() == 2
    assert ran == [("a", clock.now), ("b", clock.now)]
    assert scheduler.run_due() == 0
    clock.now = T0 + timedelta(days=3)
    assert scheduler.run_due() == 1 and ran[-1][0] == "later"


def test_running_ahead_happens_at_each_rows_own_time(engine):
    add(engine, renew=T0 + timedelta(days=30), remind=T0 + timedelta(days=23))
    ran = []
    scheduler = Scheduler(engine, "reminders", Reminder, lambda s, row, now: ran.append((row.id, now)),
                          clock=FakeClock(T0))
    scheduler.run_due(until=T0 + timedelta(days=31))
    assert ran == [("remind", T0 + timedelta(days=23)), ("renew", T0 + timedelta(days=30))]


def test_a_failing_row_is_retried_later_and_never_blocks_the_others(engine):
    add(engine, bad=T0 - timedelta(minutes=2), good=T0 - timedelta(minutes=1))
    clock, ran = FakeClock(T0), []

    def handle(session, row, now):
        if row.id == "bad":
            session.add(Reminder(id="side-effect", due_at=now))  # rolled back with the failure
            raise RuntimeError("the provider is down")
        ran.append(row.id)

    scheduler = Scheduler(engine, "reminders", Reminder, handle, clock=clock)
    scheduler.run_due()
    assert ran == ["good"]
    with Session(engine) as session:
        bad = session.get(Reminder, "bad")
        assert (bad.attempts, bad.done_at, bad.last_error) == (1, None, "RuntimeError: the provider is down")
        assert as_utc(bad.due_at) == T0 + timedelta(minutes=1)
        assert session.get(Reminder, "side-effect") is None
    for _ in range(MAX_ATTEMPTS):
        clock.now += timedelta(hours=7)
        scheduler.run_due()
    with Session(engine) as session:
        bad = session.get(Reminder, "bad")
        assert bad.attempts == MAX_ATTEMPTS and bad.done_at is not None
        assert session.exec(select(Reminder).where(Reminder.done_at.is_(None))).all() == []
