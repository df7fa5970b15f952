"""Wake a background loop as soon as a transaction that gave it work commits.

The loops (outbox relay, email dispatcher) poll anyway, so a lost wake-up only costs one
poll interval; waking them on commit saves that interval on every event in this process.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import event as orm_events
from sqlalchemy.engine import Engine
from sqlmodel import Session

_PENDING = "postsale_wakeups"
_wakers: dict[tuple[Engine, str], Callable[[], None]] = {}


def wake_after_commit(session: Session, loop_name: str) -> None:
    """Runs inside the caller's transaction: the loop wakes only if the transaction commits."""
    session.info.setdefault(_PENDING, set()).add(loop_name)


def register(engine: Engine, loop_name: str, wake: Callable[[], None]) -> Callable[[], None]:
    """Calls `wake` (from any thread) after each commit that asked for `loop_name`; returns the unregistering call."""
    _wakers[(engine, loop_name)] = wake
    return lambda: _wakers.pop((engine, loop_name), None)


@orm_events.listens_for(Session, "after_commit")
def _wake(session: Session) -> None:
    for loop_name in session.info.pop(_PENDING, ()):
        wake = _wakers.get((session.get_bind(), loop_name))
        if wake is not None:
            wake()


@orm_events.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
