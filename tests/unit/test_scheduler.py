"""Timed work: due rows run once, in order, each in its own transaction; a failing row is retried
later and never stalls the others; time is the scheduler's clock, not the wall's; the running loop
waits for the next row's due time instead of polling each second."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.scheduler import MAX_ATTEMPTS, SOONEST_LOOK, DueRow, Scheduler, pending_index, wake

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


def test_the_loop_waits_until_the_next_row_is_due_and_never_longer_than_its_poll_interval(engine):
    clock = FakeClock(T0)
    scheduler = Scheduler(engine, "reminders", Reminder, lambda s, row, now: None, clock=clock,
                          where=Reminder.text != "simulated")
    assert scheduler.seconds_to_next() == scheduler.poll_interval == 30  # nothing to do: look twice a minute
    with Session(engine) as session:
        session.add_all([Reminder(id="done", due_at=T0 + timedelta(seconds=5), done_at=T0),
                         Reminder(id="renew", due_at=T0 + timedelta(seconds=90)),
                         Reminder(id="simulated", due_at=T0 + timedelta(seconds=10), text="simulated")])
        session.commit()
    assert scheduler.seconds_to_next() == 10  # every row still to do
    assert scheduler.seconds_to_next(where=scheduler.where) == 90  # the running loop's rows
    clock.now = T0 + timedelta(minutes=5)  # due, but held by another replica or worker
    assert scheduler.seconds_to_next() == SOONEST_LOOK


async def test_an_idle_loop_sleeps_until_a_woken_rows_due_time_and_runs_it_then(engine):
    """With nothing due the loop asks the database nothing for its whole poll interval; a commit
    that adds a row wakes it, and the row runs at its due time, not before."""
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    ran = []
    scheduler = Scheduler(engine, "reminders", Reminder, lambda s, row, now: ran.append((row.id, now, utcnow())))
    loop = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(1)  # the first look: a claim and the next due time
        looked = len(statements)
        await asyncio.sleep(3)
        assert len(statements) == looked, "an idle loop polled"

        due_at = utcnow() + timedelta(seconds=2)
        with Session(engine) as session:
            session.add(Reminder(id="soon", due_at=due_at))
            wake(session, "reminders")
            session.commit()
        started = time.monotonic()
        while not ran and time.monotonic() - started < 20:
            await asyncio.sleep(0.1)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    [(row_id, now, ran_at)] = ran
    assert row_id == "soon" and now >= due_at and ran_at >= due_at
