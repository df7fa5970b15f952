"""Nothing lost, nothing twice: the outbox, its relay, the inbox, and dead letters."""

from postsale.runtime.messaging.consumer import EventHandler, Subscription, subscribe
from postsale.runtime.messaging.outbox import (MAX_EVENT_BYTES, EventTooLarge, OutboxMessage, OutboxRelay,
                                               publish_later)
from postsale.runtime.messaging.inbox import InboxMessage

__all__ = ["MAX_EVENT_BYTES", "EventHandler", "EventTooLarge", "InboxMessage", "OutboxMessage", "OutboxRelay",
           "Subscription", "publish_later", "subscribe"]
