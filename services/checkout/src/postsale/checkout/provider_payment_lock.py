"""Holding a provider's payment id, so that recording the payment and making one of its events
wait never miss each other.

A refund or a dispute can arrive before its payment is recorded: the webhook then stores it as a
waiting row, and the payment's transaction applies the waiting rows it finds. Both hold the payment
id before they read (`billing.replay_waiting_events`, `entrypoints.webhooks`): whichever comes second
waits for the first to commit, then reads what it committed. So either the webhook finds the payment,
or the payment finds the waiting row; an event is never stored after the payment looked for it and
before the payment could be seen.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session


def hold_provider_payment(session: Session, *provider_payment_ids: str) -> None:
    """Holds these payment ids until the caller's transaction ends.

    PostgreSQL: a transaction-scoped advisory lock per id, taken in one order so that two holders
    of several ids cannot deadlock. SQLite has one writer at a time, and its transaction begins at
    its first write: what the caller added is written first (the payment, or the waiting event's
    row), which takes the database's write lock, so that the reads after it are current and no
    other writer commits before this transaction ends.
    """
    session.flush()
    if session.get_bind().dialect.name != "postgresql":
        return
    for provider_payment_id in sorted(set(provider_payment_ids)):
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(provider_payment_id))))
