"""Customer activity, throttled across replicas through the publishing service's own database.

Entitlements publishes what a customer opens (`ContentOpened` on `entitlements.activity.v1`);
accounts keeps the latest of each kind for the seller and publishes `CustomerActivity` on its own
topic. Each publishes at most one event per customer, kind and product every `interval`, however
many replicas run: the service keeps a table of its last publication per (customer, kind, product)
(the columns of `ActivityPublication`) and `ActivityThrottle.claim` takes the slot with one
conditional upsert. A replica that comes within the interval, or loses the race to another one,
changes no row and publishes nothing.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from fastapi import Request
from sqlmodel import Field, Session, SQLModel

from postsale.runtime.db import insert_for

INTERVAL = timedelta(minutes=5)
NO_PRODUCT = ""  # a library visit or a login: a primary key column cannot be null


class ActivityPublication(SQLModel):
    """The columns of a service's table of last publications (`activity_publications`)."""

    customer_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    product_id: str = Field(primary_key=True, default=NO_PRODUCT)
    published_at: datetime


class ActivityThrottle:
    """One publication per customer, kind and product every `interval`, decided by the database.

    What this process claimed itself is remembered, so a customer clicking through lessons costs
    the database one write per interval, not one per page."""

    MEMORY = 100_000  # claims remembered; past it the oldest half is forgotten (the database still decides)

    def __init__(self, interval: timedelta = INTERVAL) -> None:
        self.interval = interval
        self._claimed: dict[tuple[str, str, str, str], datetime] = {}
        self._lock = threading.Lock()

    def claim(self, session: Session, table: type[ActivityPublication], *, customer_id: str, kind: str,
              product_id: str | None, now: datetime) -> bool:
        """True when the caller may publish now: no publication of this customer, kind and product
        within the interval before `now`. Runs in the caller's transaction (which publishes through
        the outbox and commits); on PostgreSQL a concurrent claim waits for it and then sees its row."""
        key = (table.__tablename__, customer_id, kind, product_id or NO_PRODUCT)
        last = self._claimed.get(key)
        if last is not None and timedelta(0) <= now - last < self.interval:
            return False
        columns = table.__table__.c
        statement = insert_for(session, table.__table__).values(
            customer_id=customer_id, kind=kind, product_id=product_id or NO_PRODUCT, published_at=now,
        ).on_conflict_do_update(
            index_elements=[columns.customer_id, columns.kind, columns.product_id],
            set_={"published_at": now},
            where=columns.published_at <= now - self.interval,
        ).returning(columns.published_at)
        if session.execute(statement).first() is None:
            return False
        with self._lock:
            self._claimed[key] = now
            if len(self._claimed) > self.MEMORY:
                for old in sorted(self._claimed, key=self._claimed.__getitem__)[:self.MEMORY // 2]:
                    del self._claimed[old]
        return True


def throttle_of(request: Request) -> ActivityThrottle:
    """The app's throttle (`create_service_app` makes one); the default one for an app without it."""
    return getattr(request.app.state, "activity_throttle", None) or ActivityThrottle()
