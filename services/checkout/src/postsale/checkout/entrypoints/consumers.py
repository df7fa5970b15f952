"""Every event checkout consumes, one line per event and use case."""

from postsale.checkout import handlers
from postsale.checkout.config import SERVICE
from postsale.contracts import AccountActivated, CustomerRegistered, ProductPublished, topics
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PRODUCTS.name, {ProductPublished: handlers.update_catalog},
                 description="The catalog read model: which products offers can grant."),
    Subscription(SERVICE, topics.CUSTOMERS.name,
                 {CustomerRegistered: handlers.remember_customer, AccountActivated: handlers.remember_customer},
                 description="Who already has an account, so a returning buyer logs in before paying."),
]
