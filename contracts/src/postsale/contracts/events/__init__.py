"""The v1 events. Every event carries what its subscribers need without calling back.

Money is an integer in minor units with an ISO currency; times carry their zone;
identifiers are strings. Each class's docstring says what the event means and when it is sent.
Each publishing service's events are in a module of their own; this package lists them all.
"""

from postsale.contracts.base import Event
from postsale.contracts.events.accounts import (
    AccountActivated, AccountSetupLinkIssued, CustomerActivity, CustomerEmailChanged, CustomerRegistered,
    EmailChangeRequested, LoginLinkIssued, PasswordResetRequested, SessionEnded, SessionEndReason, ThemeChanged,
)
from postsale.contracts.events.checkout import (
    CardExpiring, CheckoutAbandoned, UpsellDeclined, DisputeLost, DisputeOpened, DisputeWon, PaymentFailed, PaymentSucceeded, PurchaseCompleted, PurchaseRefunded,
    SubscriptionCancellationScheduled, SubscriptionCancellationUndone, SubscriptionCancelled, SubscriptionPastDue,
    SubscriptionPaused, SubscriptionResumed,
)
from postsale.contracts.events.common import (
    DELIVERY_KIND_WORDS, KIND_DESCRIPTION, AccessPolicy, Actor, BillingKind, DeliveryKind, DeliveryType, PaymentKind,
    PurchasedProduct,
    delivery_fields, delivery_kind_of,
)
from postsale.contracts.events.entitlements import (
    AccessGranted, AccessRestored, AccessRevoked, AccessSuspended, Address, ContentOpened, DownloadLinkIssued,
    FulfilmentRequested, IntegrationCallFailed, LicenseKeyIssued, ProductArchived, ProductCompleted, ProductPublished,
    ProductUpdated,
)
from postsale.contracts.events.notifications import EmailFailed, EmailSent

ALL_EVENTS: tuple[type[Event], ...] = (
    PurchaseCompleted, PurchaseRefunded, DisputeOpened, DisputeWon, DisputeLost, UpsellDeclined,
    PaymentSucceeded, PaymentFailed, SubscriptionPastDue, SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone, SubscriptionCancelled, SubscriptionPaused, SubscriptionResumed, CardExpiring,
    CheckoutAbandoned,
    ProductPublished, ProductUpdated, ProductArchived,
    AccessGranted, AccessRevoked, AccessSuspended, AccessRestored,
    ContentOpened, ProductCompleted,
    FulfilmentRequested, IntegrationCallFailed, DownloadLinkIssued, LicenseKeyIssued,
    CustomerRegistered, AccountActivated, CustomerActivity, SessionEnded, CustomerEmailChanged, ThemeChanged,
    AccountSetupLinkIssued, LoginLinkIssued, PasswordResetRequested, EmailChangeRequested,
    EmailSent, EmailFailed,
)

__all__ = [
    "ALL_EVENTS", "DELIVERY_KIND_WORDS", "KIND_DESCRIPTION", "AccessGranted", "AccessPolicy", "AccessRestored",
    "AccessRevoked",
    "AccessSuspended", "AccountActivated", "AccountSetupLinkIssued", "Actor", "Address", "BillingKind", "CardExpiring",
    "CheckoutAbandoned", "ContentOpened", "LicenseKeyIssued", "ProductCompleted", "UpsellDeclined",
    "CustomerActivity", "CustomerEmailChanged", "CustomerRegistered", "DeliveryKind", "DeliveryType", "DisputeLost",
    "DisputeOpened", "DisputeWon", "DownloadLinkIssued", "EmailChangeRequested", "EmailFailed", "EmailSent",
    "FulfilmentRequested", "IntegrationCallFailed", "LoginLinkIssued", "PasswordResetRequested", "PaymentFailed",
    "PaymentKind", "PaymentSucceeded", "ProductArchived", "ProductPublished", "ProductUpdated", "PurchaseCompleted",
    "PurchaseRefunded", "PurchasedProduct", "SessionEndReason", "SessionEnded", "SubscriptionCancellationScheduled",
    "SubscriptionCancellationUndone", "SubscriptionCancelled", "SubscriptionPastDue", "SubscriptionPaused",
    "SubscriptionResumed", "ThemeChanged", "delivery_fields", "delivery_kind_of",
]
