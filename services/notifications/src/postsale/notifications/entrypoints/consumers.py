"""Every event notifications consumes, one line per event and use case."""

from postsale.contracts import (
    AccountSetupLinkIssued,
    LoginLinkIssued,
    PasswordResetRequested,
    PaymentFailed,
    PaymentSucceeded,
    PurchaseCompleted,
    PurchaseRefunded,
    SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone,
    SubscriptionCancelled,
    SubscriptionPastDue,
    SubscriptionPaused,
    SubscriptionResumed,
    topics,
)
from postsale.contracts.events import EmailChangeRequested
from postsale.notifications import billing, handlers
from postsale.notifications.config import SERVICE
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(
        SERVICE,
        topics.PURCHASES.name,
        {
            PurchaseCompleted: handlers.on_purchase_completed,
            PurchaseRefunded: handlers.queue_refund_confirmation,
        },
        description="Queues the purchase confirmation, the seller's notification of each sale and the refund "
                    "confirmation; plans the reminders of a subscription's trial and yearly renewal.",
    ),
    Subscription(
        SERVICE,
        topics.SUBSCRIPTIONS.name,
        {
            PaymentFailed: billing.on_payment_failed,
            PaymentSucceeded: billing.on_payment_succeeded,
            SubscriptionCancelled: billing.on_subscription_cancelled,
            SubscriptionPastDue: billing.follow_billing_change,
            SubscriptionPaused: billing.follow_billing_change,
            SubscriptionResumed: billing.follow_billing_change,
            SubscriptionCancellationScheduled: billing.follow_billing_change,
            SubscriptionCancellationUndone: billing.follow_billing_change,
        },
        description="Queues the emails of failed payments (to the customer and the seller), of a subscription "
                    "cancelled by dunning and of each renewal's receipt; follows each subscription's state, so "
                    "that a reminder is not sent once it was cancelled or paused.",
    ),
    Subscription(
        SERVICE,
        topics.ACCOUNT_LINKS.name,
        {
            AccountSetupLinkIssued: handlers.queue_account_setup_email,
            LoginLinkIssued: handlers.queue_login_link_email,
            PasswordResetRequested: handlers.queue_password_reset_email,
            EmailChangeRequested: handlers.queue_email_change_emails,
        },
        description="Queues the emails that carry an account setup link, a login link and code, a password "
                    "reset link and code, and the confirmation of a new login email (with a notice to the old one).",
    ),
]
