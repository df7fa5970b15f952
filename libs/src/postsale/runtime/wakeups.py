"""Background loops that poll for due work and are woken early by the commit that gave them some.

A loop (the outbox relay, the email dispatcher, a scheduler) runs its work again at once when the
work says more is waiting, when a transaction that asked for the loop commits, when the work's
next row falls due (a scheduler knows when), or else every poll interval; a failure is logged and
retried with backoff. Polling stays the guarantee (another replica's commit cannot wake this
process); waking only saves the wait.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from sqlalchemy import event as orm_events
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger(__name__)
_PENDING = "postsale_wakeups"
_wakers: dict[tuple[Engine, str], Callable[[], None]] = {}


def wake_after_commit(session: Session, loop_name: str) -> None:
    """Runs inside the caller's transaction: the loop wakes only if the transaction commits."""
    session.info.setdefault(_PENDING, set()).add(loop_name)


async def run_loop(engine: Engine, loop_name: str, work: Callable[[], Awaitable[bool | float]], *,
                   poll_interval: float, max_backoff: float = 5.0) -> None:
    """Runs `work` until cancelled. `work` returns True when more is waiting right now, False when
    nothing is, or the seconds until its next work falls due: the loop then waits that long, at
    most `poll_interval`."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    _wakers[(engine, loop_name)] = lambda: loop.call_soon_threadsafe(woken.set)
    failures = 0
    try:
        while True:
            # Cleared before the work, so a commit during the work wakes the next round.
            woken.clear()
            try:
                outcome = await work()
                failures = 0
            except Exception:
                failures = min(failures + 1, 16)  # the wait stops growing long before
                outcome = min(poll_interval * 2 ** failures, max_backoff)
                log.exception("%s failed; retrying in %.1fs", loop_name, outcome)
            if outcome is True:
                continue
            wait = poll_interval if outcome is False else min(outcome, poll_interval)
            try:
                await asyncio.wait_for(woken.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass
    finally:
        _wakers.pop((engine, loop_name), None)


@orm_events.listens_for(Session, "after_commit")
def _wake(session: Session) -> None:
    for loop_name in session.info.pop(_PENDING, ()):
        wake = _wakers.get((session.get_bind(), loop_name))
        if wake is not None:
            wake()


@orm_events.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
