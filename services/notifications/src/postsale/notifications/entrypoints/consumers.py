"""Every event notifications consumes, one line per event and use case."""

from postsale.contracts import (
    AccessGranted,
    AccessRestored,
    AccessRevoked,
    AccessSuspended,
    AccountSetupLinkIssued,
    CardExpiring,
    EmailChangeRequested,
    ThemeChanged,
    CheckoutAbandoned,
    CustomerActivity,
    DownloadLinkIssued,
    IntegrationCallFailed,
    LicenseKeyIssued,
    LoginLinkIssued,
    PasswordResetRequested,
    ProductCompleted,
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
    UpsellDeclined,
    topics,
)
from postsale.notifications import access, billing, checkouts, deliveries, handlers, rules, templates
from postsale.notifications.config import SERVICE
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(
        SERVICE,
        topics.PURCHASES.name,
        {
            PurchaseCompleted: handlers.on_purchase_completed,
            PurchaseRefunded: handlers.queue_refund_confirmation,
            UpsellDeclined: rules.on_upsell_declined,
        },
        description="Queues the purchase confirmation, the seller's notification of each sale and the refund "
                    "confirmation; plans the reminders of a subscription's trial and yearly renewal, the steps of "
                    "the offer's follow-up sequences and the follow-up offers of rules about buying or declining.",
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
            CardExpiring: billing.queue_card_expiring_email,
        },
        description="Queues the emails of failed payments (to the customer and the seller), of a subscription "
                    "cancelled by dunning, of each renewal's receipt and of a card that expires soon; follows each subscription's state, so "
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
    Subscription(
        SERVICE,
        topics.ACCESS.name,
        {
            AccessGranted: access.follow_access,
            AccessRevoked: access.follow_access,
            AccessSuspended: access.follow_access,
            AccessRestored: access.follow_access,
        },
        description="Follows each customer's access: plans the reminder before access granted for a limited time "
                    "ends, and stops follow-ups when access to their offer's products ends.",
    ),
    Subscription(
        SERVICE,
        topics.DELIVERIES.name,
        {IntegrationCallFailed: deliveries.notify_sellers_of_failed_call},
        description="Tells the seller when a call to a third-party membership platform failed for the last time.",
    ),
    Subscription(
        SERVICE,
        topics.DOWNLOAD_LINKS.name,
        {DownloadLinkIssued: deliveries.queue_download_link_email},
        description="Queues the email that carries a file product's download link.",
    ),
    Subscription(
        SERVICE,
        topics.LICENSE_KEYS.name,
        {LicenseKeyIssued: deliveries.queue_license_key_email},
        description="Queues the email that carries a software product's license key.",
    ),
    Subscription(
        SERVICE,
        topics.CUSTOMERS.name,
        {ThemeChanged: templates.follow_theme, CustomerActivity: rules.on_customer_activity},
        description="Keeps the seller's newest theme, which every email's HTML takes, and each customer's last "
                    "login, for the follow-up rule \"has not logged in\".",
    ),
    Subscription(
        SERVICE,
        topics.CHECKOUTS.name,
        {CheckoutAbandoned: checkouts.queue_recovery_email},
        description="Queues the one reminder of a checkout left unpaid (a marketing email).",
    ),
    Subscription(
        SERVICE,
        topics.ACTIVITY.name,
        {ProductCompleted: rules.on_product_completed},
        description="Plans the follow-up offers of rules about finishing a product.",
    ),
]
