"""What the notifications service's own tests share: a migrated database, events handed to the
service's use cases through its subscription list and inbox, and a clock the test moves."""

from __future__ import annotations

import uuid
from datetime import datetime

from opentelemetry import trace
from sqlmodel import Session, select

from postsale.contracts import Event
from postsale.notifications.adapters.tables import Email
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.messaging.consumer import Delivery, apply_batch, apply_once


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        self.now = moment


def deliver(engine, event: Event, event_id: str | None = None) -> bool:
    """Hands the event to the use case the service subscribes it to, through the inbox."""
    subscription = _subscription_of(event)
    return apply_once(engine, subscription.consumer_name, subscription.handlers[type(event)], event,
                      event_id or uuid.uuid4().hex)


def deliver_batch(engine, events: list[Event]) -> None:
    """Hands the events of one subscription to their use cases in one transaction, as the
    consumer does with what the broker already holds."""
    subscription = _subscription_of(events[0])
    apply_batch(engine, subscription.consumer_name, [
        Delivery(event, subscription.handlers[type(event)], uuid.uuid4().hex, trace.get_current_span())
        for event in events])


def _subscription_of(event: Event):
    return next(s for s in SUBSCRIPTIONS if type(event) in s.handlers)


def emails(engine) -> dict[str, Email]:
    with Session(engine) as session:
        return {e.key: e for e in session.exec(select(Email)).all()}
