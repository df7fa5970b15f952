"""Every topic Postsale publishes, named `<owning service>.<stream>.v<major>`.

A breaking change to a topic's messages makes a new major version: a new topic, published
beside the old one until its subscribers have moved.

A *restricted* topic carries secrets (links and codes that sign a customer in or fetch a
file). Only the service named in `subscribers` may read it; in production a Kafka ACL
grants Read on it to that service's principal alone. Public topics never carry a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    publisher: str
    key: str
    description: str
    subscribers: tuple[str, ...] = ()
    compacted: bool = False
    restricted: bool = False
    retention_days: int = 7
    partitions: int = 3

    def __str__(self) -> str:
        return self.name

    @property
    def retention(self) -> str:
        if self.compacted:
            return "compacted: the newest event per key is kept for good"
        return f"{self.retention_days} day{'s' if self.retention_days != 1 else ''}"

    def kafka_configs(self) -> dict[str, str]:
        """The topic's configuration in Kafka, as its creator sets it."""
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {"retention.ms": str(self.retention_days * 24 * 3600 * 1000)}


PURCHASES = Topic(
    "checkout.purchases.v1", publisher="checkout", key="customer id",
    description="One-time purchases and upsells, their refunds and disputes.",
    subscribers=("entitlements", "accounts", "notifications"),
)
SUBSCRIPTIONS = Topic(
    "checkout.subscriptions.v1", publisher="checkout", key="customer id",
    description="Recurring payments of subscriptions and payment plans, and each subscription's life.",
    subscribers=("entitlements", "notifications"),
)
PRODUCTS = Topic(
    "entitlements.products.v1", publisher="entitlements", key="product id", compacted=True,
    description="The catalogue: what each product is and how it is delivered.",
    subscribers=("checkout",),
)
ACCESS = Topic(
    "entitlements.access.v1", publisher="entitlements", key="customer id",
    description="The access ledger: every grant, revoke, suspension and restoration, with why and who.",
    subscribers=("checkout", "accounts", "notifications"),
)
CHECKOUTS = Topic(
    "checkout.checkouts.v1", publisher="checkout", key="buyer email",
    description="Checkouts that did not end in a payment: a buyer who gave an email and left.",
    subscribers=("notifications",),
)
ACTIVITY = Topic(
    "entitlements.activity.v1", publisher="entitlements", key="customer id",
    description="What customers open in their library (the library, lessons, files) and the products they finish.",
    subscribers=("accounts", "notifications"),
)
DELIVERIES = Topic(
    "entitlements.deliveries.v1", publisher="entitlements", key="customer id",
    description="What external systems must do for a purchase (ship goods, book a seat), and failed calls "
                "to third-party membership platforms.",
    subscribers=("notifications",),
)
DOWNLOAD_LINKS = Topic(
    "entitlements.download-links.v1", publisher="entitlements", key="customer id", restricted=True,
    retention_days=1,
    description="Signed, short-lived download links, for the email that carries them.",
    subscribers=("notifications",),
)
LICENSE_KEYS = Topic(
    "entitlements.license-keys.v1", publisher="entitlements", key="customer id", restricted=True,
    retention_days=1,
    description="License keys issued to customers, for the email that delivers them.",
    subscribers=("notifications",),
)
CUSTOMERS = Topic(
    "accounts.customers.v1", publisher="accounts", key="customer id",
    description="Customers: registered, account activated, email changed, sessions ended, the store's theme, and "
                "their activity. Every service follows it for ended sessions and the theme.",
    subscribers=("checkout", "entitlements", "notifications"),
)
ACCOUNT_LINKS = Topic(
    "accounts.account-links.v1", publisher="accounts", key="customer id", restricted=True,
    retention_days=1,
    description="Account setup links, login links and codes, password resets, for the emails that carry them.",
    subscribers=("notifications",),
)
EMAILS = Topic(
    "notifications.emails.v1", publisher="notifications", key="recipient email",
    description="Every email handed to the SMTP relay, or given up on.",
    subscribers=("checkout", "accounts"),
)

ALL: tuple[Topic, ...] = (
    PURCHASES, SUBSCRIPTIONS, CHECKOUTS, PRODUCTS, ACCESS, ACTIVITY, DELIVERIES, DOWNLOAD_LINKS, LICENSE_KEYS, CUSTOMERS,
    ACCOUNT_LINKS, EMAILS,
)
BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL}
