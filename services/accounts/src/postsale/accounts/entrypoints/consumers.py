"""Every event accounts consumes, one line per event and use case."""

from postsale.accounts import activity, customers, handlers
from postsale.accounts.config import SERVICE
from postsale.contracts import ContentOpened, EmailFailed, EmailSent, PurchaseCompleted, topics
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PURCHASES.name, {PurchaseCompleted: handlers.register_buyer},
                 description="Creates the buyer's customer record and setup tokens, and emails the setup link."),
    Subscription(SERVICE, topics.EMAILS.name,
                 {EmailSent: customers.record_account_email, EmailFailed: customers.record_account_email},
                 description="Keeps each customer's account emails and whether the SMTP relay took them, for the seller."),
    Subscription(SERVICE, topics.ACTIVITY.name, {ContentOpened: activity.record_content_opened},
                 description="Keeps each customer's last library visit, lesson and download, for the seller, and "
                             "tells the store (`CustomerActivity`, throttled)."),
]
