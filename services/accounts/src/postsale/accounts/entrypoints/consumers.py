"""Every event accounts consumes, one line per event and use case."""

from postsale.accounts import customers, handlers
from postsale.accounts.config import SERVICE
from postsale.contracts import CustomerActivity, EmailFailed, EmailSent, PurchaseCompleted, topics
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PURCHASES.name, {PurchaseCompleted: handlers.register_buyer},
                 description="Creates the buyer's customer record and setup tokens, and emails the setup link."),
    Subscription(SERVICE, topics.EMAILS.name,
                 {EmailSent: customers.record_account_email, EmailFailed: customers.record_account_email},
                 description="Keeps each customer's account emails and whether the SMTP relay took them, for the seller."),
    Subscription(SERVICE, topics.CUSTOMERS.name, {CustomerActivity: customers.record_activity},
                 description="Keeps each customer's last login, library visit, lesson and download, for the seller."),
]
