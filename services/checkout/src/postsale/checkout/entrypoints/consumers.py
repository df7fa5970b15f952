"""Every event checkout consumes, one line per event and use case."""

from postsale.checkout import catalog, customers, happenings
from postsale.checkout.config import SERVICE
from postsale.contracts import (AccountActivated, CustomerEmailChanged, CustomerRegistered, EmailFailed, EmailSent,
                                ProductArchived, ProductPublished, ProductUpdated, topics)
from postsale.runtime.messaging import Subscription

SUBSCRIPTIONS = [
    Subscription(SERVICE, topics.PRODUCTS.name,
                 {ProductPublished: catalog.update_catalog, ProductUpdated: catalog.update_catalog,
                  ProductArchived: catalog.archive_in_catalog},
                 description="The catalog read model: which products offers can grant, and which are archived."),
    Subscription(SERVICE, topics.CUSTOMERS.name,
                 {CustomerRegistered: customers.remember_customer, AccountActivated: customers.remember_customer,
                  CustomerEmailChanged: customers.follow_email_change},
                 description="Who already has an account (at which address), so a returning buyer logs in before "
                             "paying; the offers a seller grants to a customer added by hand."),
    Subscription(SERVICE, topics.ACCESS.name,
                 {event: happenings.access_changed for event in happenings.ACCESS_WORDS},
                 description="A purchase's access granted, revoked, suspended or restored, for its timeline."),
    Subscription(SERVICE, topics.EMAILS.name, {EmailSent: happenings.email_told, EmailFailed: happenings.email_told},
                 description="The emails about a purchase, sent or given up on, for its timeline."),
]
