"""Holding a purchase attempt's row, so that paying it and counting it as abandoned never overlap.

Both the payment's transaction (`handlers.complete_first_payment`) and the abandonment run
(`recovery.run_recovery`) hold the attempt before they read its status: whichever comes second
waits for the first to commit, then reads what it committed. So `CheckoutAbandoned` never goes out
for an attempt whose payment committed first, and a payment never completes on a stale read.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session

from postsale.checkout.adapters.tables import CheckoutSession


def hold_attempt(session: Session, checkout: CheckoutSession) -> None:
    """Holds the attempt's row until the caller's transaction ends, and reads it afresh.

    PostgreSQL: `SELECT ... FOR UPDATE`. SQLite has no row locks, and its transaction begins at its
    first write, reading whatever is committed until then: a write to the row first takes the
    database's write lock, so that the read after it is current and no other writer commits
    before this transaction ends.
    """
    session.flush()  # what the caller changed is written, not lost to the fresh read
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(CheckoutSession).where(CheckoutSession.id == checkout.id)  # type: ignore[arg-type]
                        .values(status=CheckoutSession.status))
    session.refresh(checkout, with_for_update=True)
