"""Customer activity for the seller (last login, library visit, lesson, download), published as
`CustomerActivity` on `accounts.customers.v1`, where accounts keeps the latest of each kind.

Throttled in each process: at most one event per customer and kind every `INTERVAL` (a customer
who opens ten lessons in a minute makes one event), so the topic stays small. A service calls
`record_activity(request, customer_id, kind)` from a page handler; that is all.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from fastapi import Request
from sqlmodel import Session

from postsale.contracts import CustomerActivity
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging import publish_later

ActivityKind = Literal["login", "library_visit", "lesson", "download"]
INTERVAL_SECONDS = 300.0


class ActivityThrottle:
    """Remembers when each (customer, kind) was last published by this process."""

    def __init__(self, interval: float = INTERVAL_SECONDS, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def allow(self, customer_id: str, kind: str) -> bool:
        now = self.clock()
        with self._lock:
            last = self._last.get((customer_id, kind))
            if last is not None and now - last < self.interval:
                return False
            self._last[(customer_id, kind)] = now
            if len(self._last) > 100_000:  # forget the oldest half rather than grow without bound
                for key, _ in sorted(self._last.items(), key=lambda item: item[1])[:50_000]:
                    del self._last[key]
            return True


def queue_activity(session: Session, throttle: ActivityThrottle, *, customer_id: str, kind: ActivityKind,
                   source: str, product_id: str | None = None) -> bool:
    """Queues `CustomerActivity` in the caller's transaction unless one went out lately; True when queued."""
    if not throttle.allow(customer_id, kind):
        return False
    publish_later(session, CustomerActivity(customer_id=customer_id, kind=kind, product_id=product_id,
                                            occurred_at=utcnow()), source=source)
    return True


def record_activity(request: Request, customer_id: str, kind: ActivityKind, product_id: str | None = None) -> bool:
    """From a page handler of any service made by `create_service_app`: the customer did `kind`
    (with `product_id` for a lesson or a download). Commits its own transaction; True when an event
    was queued, False when one went out lately (or the app has no throttle, as in a unit test)."""
    state = request.app.state
    throttle: ActivityThrottle | None = getattr(state, "activity_throttle", None)
    if throttle is None:
        return False
    with Session(state.engine) as session:
        queued = queue_activity(session, throttle, customer_id=customer_id, kind=kind, product_id=product_id,
                                source=f"/postsale/{getattr(state, 'service', 'unknown')}")
        session.commit()
    return queued
