"""Every event entitlements consumes, one line per event and use case.

A failed payment changes nothing by itself: access is kept while retries run
(`SubscriptionPastDue`) and ends with `SubscriptionCancelled` (reason "payment failed") when
dunning gives up. A successful payment changes nothing either.
"""

from postsale.contracts import (DisputeLost, DisputeOpened, DisputeWon, PurchaseCompleted, PurchaseRefunded,
                                SubscriptionCancellationScheduled, SubscriptionCancellationUndone,
                                SubscriptionCancelled, SubscriptionPastDue, SubscriptionPaused, SubscriptionResumed,
                                topics)
from postsale.entitlements import handlers
from postsale.entitlements.config import SERVICE
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(
        SERVICE,
        topics.PURCHASES.name,
        {
            PurchaseCompleted: handlers.grant_access_for_purchase,
            PurchaseRefunded: handlers.apply_refund,
            DisputeOpened: handlers.apply_dispute,
            DisputeWon: handlers.apply_dispute,
            DisputeLost: handlers.apply_dispute,
        },
        description="Grants access to what each purchase bought; applies the offer's access policy to its "
                    "refunds and disputes.",
    ),
    Subscription(
        SERVICE,
        topics.SUBSCRIPTIONS.name,
        {
            SubscriptionCancellationScheduled: handlers.apply_billing_change,
            SubscriptionCancellationUndone: handlers.apply_billing_change,
            SubscriptionCancelled: handlers.apply_billing_change,
            SubscriptionPaused: handlers.apply_billing_change,
            SubscriptionResumed: handlers.apply_billing_change,
            SubscriptionPastDue: handlers.apply_billing_change,
        },
        description="Applies the offer's access policy to the life of each subscription and payment plan: "
                    "cancellation, pause, resume, past due.",
    ),
]
