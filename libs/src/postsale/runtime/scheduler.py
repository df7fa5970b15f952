"""Timed work, one shape everywhere: rows with a due time, claimed by a scheduler.

A service keeps its timed work (renewals, retries, end-of-period revocations, reminders,
follow-up emails, webhook retries) as rows of a table that has the `DueRow` columns. The
`Scheduler` claims due rows one at a time with `FOR UPDATE SKIP LOCKED` (on PostgreSQL; so two
replicas never take the same row), runs the service's handler for the row in the row's own
transaction, and marks it done. A row whose handler fails is retried later with backoff, then
given up with its error kept: one bad row never stalls the others. Nothing sleeps in memory: a
restart loses nothing, because the rows are the schedule. Between rows the loop waits for the
next one's due time, woken sooner by a commit that added one (`wake`), and looks again at least
every `poll_interval` (for rows another replica added), so an idle service does not poll each
second. Each row run is an OpenTelemetry span
(`<scheduler> run`) with the row, its attempt and its outcome.

Every handler gets `now` from the scheduler's clock (injectable), never from the wall clock, so
tests and the sandbox's lifecycle simulator can move time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Callable, Generic, TypeVar

from opentelemetry.trace import Status, StatusCode
from sqlalchemy import Index, func, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from postsale.runtime import tracing, wakeups
from postsale.runtime.clock import as_utc, utcnow

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
MAX_ATTEMPTS = 8
SOONEST_LOOK = 1.0
"""Seconds: a row due but not run (another replica or worker holds it, or its retry is due) is
looked at again after this long, as every row was when the loops polled each second."""


class DueRow(SQLModel):
    """The columns every table of timed work has. Add `pending_index(<table>)` to its table args."""

    id: str = Field(primary_key=True)
    due_at: datetime
    done_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


def pending_index(table: str) -> Index:
    """A partial index of the rows still to do, so a claim stays cheap however many are done."""
    condition = text("done_at IS NULL")
    return Index(f"ix_{table}_pending", "due_at", sqlite_where=condition, postgresql_where=condition)


Row = TypeVar("Row", bound=DueRow)


def end_pending(session: Session, table: type[Row], *where, now: datetime, skip_locked: bool = False,
                reason: str | None = None) -> int:
    """Ends the rows of `table` still to do that match `where` (done at `now`, with `reason` as their
    last error), as a use case does when it replaces or cancels timed work; returns how many. With
    `skip_locked`, a row the scheduler is running right now is left to that run, not waited for (for
    a caller that holds what the run waits on). Runs inside the caller's transaction."""
    pending = [table.done_at.is_(None), *where]  # type: ignore[union-attr]
    if skip_locked:
        # FOR UPDATE SKIP LOCKED belongs to a SELECT: the UPDATE ends the rows it could lock.
        locked = select(table.id).where(*pending).with_for_update(skip_locked=True)
        pending = [table.id.in_(locked)]  # type: ignore[attr-defined]
    # One UPDATE, run at once (so the rows are ended before the caller adds the next one: one
    # pending row per subject), instead of loading each row and flushing it back.
    ended = session.execute(update(table).where(*pending).values(
        done_at=now, **({"last_error": reason} if reason is not None else {})))
    return ended.rowcount


def retry_delay(attempts: int) -> timedelta:
    """1 minute, 2, 4, ... capped at 6 hours."""
    return timedelta(minutes=min(2 ** (attempts - 1), 360))


class Scheduler(Generic[Row]):
    """Runs `handle(session, row, now)` for each due row of `table`, each in its own transaction.

    The handler must not commit; it may add rows (the next renewal, a retry) and publish events
    through the outbox. When it returns, the row is done.
    """

    def __init__(self, engine: Engine, name: str, table: type[Row], handle: Callable[[Session, Row, datetime], None],
                 *, clock: Clock = utcnow, poll_interval: float = 30.0, batch_size: int = 50, where=None) -> None:
        """`where`: a SQL condition on `table` that the running loop keeps to (rows outside it run
        only when asked by `run_due(where=...)`, as the lifecycle simulator does). `poll_interval`:
        the longest the running loop waits without looking."""
        self.engine, self.name, self.table, self.handle = engine, name, table, handle
        self.clock, self.poll_interval, self.batch_size = clock, poll_interval, batch_size
        self.where = where

    async def run(self) -> None:
        """Runs due rows until cancelled: when the next falls due, when a commit asked for it, and
        every poll interval."""
        await wakeups.run_loop(self.engine, self.name, self._run_batch, poll_interval=self.poll_interval)

    async def _run_batch(self) -> bool | float:
        def run() -> bool | float:
            return self.run_due(where=self.where) == self.batch_size or self.seconds_to_next(where=self.where)
        return await asyncio.to_thread(run)

    def seconds_to_next(self, *, where=None) -> float:
        """How long the loop may wait before the earliest row still to do (narrowed by `where`)
        falls due: `SOONEST_LOOK` at least, `poll_interval` when there is none."""
        with Session(self.engine) as session:
            query = select(func.min(self.table.due_at)).where(self.table.done_at.is_(None))  # type: ignore[union-attr]
            due_at = as_utc(session.exec(query.where(where) if where is not None else query).one())
        if due_at is None:
            return self.poll_interval
        return max((due_at - self.clock()).total_seconds(), SOONEST_LOOK)

    def run_due(self, *, until: datetime | None = None, where=None) -> int:
        """Runs up to a batch of rows due by `until` (default: the clock's now), earliest first,
        narrowed by the SQL condition `where`; returns how many it ran."""
        ran = 0
        while ran < self.batch_size and self.run_one(until=until, where=where):
            ran += 1
        return ran

    def run_one(self, *, until: datetime | None = None, where=None) -> bool:
        """Claims and runs the earliest due row; False when none is due."""
        with Session(self.engine) as session:
            query = (select(self.table)
                     .where(self.table.done_at.is_(None), self.table.due_at <= (until or self.clock()))  # type: ignore[union-attr]
                     .order_by(self.table.due_at, self.table.id).limit(1).with_for_update(skip_locked=True))
            if where is not None:
                query = query.where(where)
            row = session.exec(query).first()
            if row is None:
                return False
            row_id, due_at = row.id, as_utc(row.due_at)
            # Ahead of time (the lifecycle simulator) a row happens at its own due time, as it
            # would have; otherwise at the clock's now.
            now = due_at if until is not None else max(due_at, self.clock())
            # A trace of its own per row run (an idle poll makes none): the events the handler
            # queues continue it, so a renewal can be followed into every service.
            with tracing.start(f"{self.name} run", attributes={
                    "postsale.scheduler.name": self.name, "postsale.scheduler.row_id": row_id,
                    "postsale.scheduler.due_at": due_at.isoformat(), "postsale.scheduler.attempt": row.attempts + 1,
                    "postsale.scheduler.ahead_of_time": until is not None}) as span:
                try:
                    self.handle(session, row, now)
                    row.done_at = now
                    session.add(row)
                    session.commit()
                    span.set_attribute("postsale.outcome", "done")
                    return True
                except Exception as exc:  # noqa: BLE001 - recorded on the row below, retried later
                    session.rollback()
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                    span.set_attribute("postsale.outcome", self._record_failure(row_id, exc))
        return True

    def _record_failure(self, row_id: str, error: BaseException) -> str:
        """Schedules the row's retry, or gives it up; returns which."""
        with Session(self.engine) as session:
            row = session.get(self.table, row_id, with_for_update=True)
            if row is None or row.done_at is not None:
                return "done elsewhere"
            row.attempts += 1
            row.last_error = f"{type(error).__name__}: {error}"[:2000]
            if row.attempts >= MAX_ATTEMPTS:
                row.done_at = self.clock()
                outcome = "given up"
                log.error("%s gave up on %s after %s attempts: %s", self.name, row_id, row.attempts, error)
            else:
                row.due_at = self.clock() + retry_delay(row.attempts)
                outcome = "retry scheduled"
                log.warning("%s failed on %s (attempt %s): %r", self.name, row_id, row.attempts, error)
            session.add(row)
            session.commit()
            return outcome


def wake(session: Session, scheduler_name: str) -> None:
    """Runs inside the caller's transaction: the scheduler looks for due rows once it commits."""
    wakeups.wake_after_commit(session, scheduler_name)
