"""Every event notifications consumes, one line per event and use case."""

from postsale.contracts import PurchaseCompleted, topics
from postsale.notifications import handlers
from postsale.notifications.config import SERVICE
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PURCHASES.name, {PurchaseCompleted: handlers.queue_purchase_confirmation},
                 description="Queues the purchase confirmation email."),
]
