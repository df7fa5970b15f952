"""The events outgoing webhooks forward: every event of every public topic, one line per topic.

They are read in a consumer group of their own (`postsale-notifications-webhooks`), beside the
emails' group: each keeps its own offsets, so a slow email never delays a webhook, nor the other
way round, and a topic the emails do not need is read for the webhooks alone. Restricted topics
(links and codes that sign a customer in) are never read here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postsale.notifications.config import SERVICE
from postsale.notifications.webhooks import deliveries
from postsale.notifications.webhooks.domain import EVENT_TYPES, FORWARDED_TOPICS
from postsale.runtime.messaging import Subscription


@dataclass
class WebhookSubscription(Subscription):
    """A subscription in the webhooks' consumer group, with its own inbox rows."""

    @property
    def group_id(self) -> str:
        return f"postsale-{self.service}-webhooks"

    @property
    def consumer_name(self) -> str:
        return f"{self.service}-webhooks:{self.topic}"


SUBSCRIPTIONS = [
    WebhookSubscription(
        SERVICE,
        topic.name,
        {event: deliveries.record_event for event in EVENT_TYPES.values() if event.topic == topic.name},
        description="Queues a signed delivery of each event to every enabled webhook endpoint that wants its type.",
        wanted=deliveries.wanted_by_endpoints,
    )
    for topic in FORWARDED_TOPICS
]
