"""Every event checkout consumes, one line per event and use case."""

from postsale.checkout import customers, handlers
from postsale.checkout.config import SERVICE
from postsale.contracts import AccountActivated, CustomerEmailChanged, CustomerRegistered, ProductPublished, topics
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PRODUCTS.name, {ProductPublished: handlers.update_catalog},
                 description="The catalog read model: which products offers can grant."),
    Subscription(SERVICE, topics.CUSTOMERS.name,
                 {CustomerRegistered: customers.remember_customer, AccountActivated: customers.remember_customer,
                  CustomerEmailChanged: customers.follow_email_change},
                 description="Who already has an account (at which address), so a returning buyer logs in before "
                             "paying; the offers a seller grants to a customer added by hand."),
]
