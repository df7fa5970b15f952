"""Every topic Postsale publishes, named `<owning service>.<stream>.v<major>`.

A breaking change to a topic's messages makes a new major version: a new topic, published
beside the old one until its subscribers have moved.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    publisher: str
    key: str
    compacted: bool = False
    partitions: int = 3

    def __str__(self) -> str:
        return self.name


PURCHASES = Topic("checkout.purchases.v1", publisher="checkout", key="customer id")
PRODUCTS = Topic("entitlements.products.v1", publisher="entitlements", key="product id", compacted=True)
ACCESS = Topic("entitlements.access.v1", publisher="entitlements", key="customer id")
CUSTOMERS = Topic("accounts.customers.v1", publisher="accounts", key="customer id")
EMAILS = Topic("notifications.emails.v1", publisher="notifications", key="recipient email")

ALL: tuple[Topic, ...] = (PURCHASES, PRODUCTS, ACCESS, CUSTOMERS, EMAILS)
