"""Every event accounts consumes, one line per event and use case."""

from postsale.accounts import handlers
from postsale.accounts.config import SERVICE
from postsale.contracts import PurchaseCompleted, topics
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PURCHASES.name, {PurchaseCompleted: handlers.register_buyer},
                 description="Creates the buyer's customer record and setup tokens, and emails the setup link."),
]
