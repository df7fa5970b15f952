"""Every event entitlements consumes, one line per event and use case."""

from postsale.contracts import PurchaseCompleted, topics
from postsale.entitlements import handlers
from postsale.entitlements.config import SERVICE
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(
        SERVICE,
        topics.PURCHASES.name,
        {PurchaseCompleted: handlers.grant_access_for_purchase},
        description="Grants access to what each purchase bought.",
    ),
]
