"""Entitlements' events: the catalogue, the access ledger, activity, deliveries and download links."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Contract, Event, secret
from postsale.contracts.events.common import Actor, DeliveryKind, DeliveryType, KIND_DESCRIPTION


# --- entitlements.products.v1 ---------------------------------------------------------------


class _Product(Event):
    topic: ClassVar[str] = topics.PRODUCTS.name
    subject_field: ClassVar[str] = "product_id"
    key_field: ClassVar[str] = "product_id"

    product_id: str


class _ProductState(_Product):
    name: str
    description: str = ""
    delivery_type: DeliveryType
    delivery_kind: DeliveryKind | None = Field(default=None, description=KIND_DESCRIPTION)


class ProductPublished(_ProductState):
    """A product was created. The topic is compacted: the newest event per product stays."""

    event_type: ClassVar[str] = "postsale.product.published"
    published_at: AwareDatetime


class ProductUpdated(_ProductState):
    """A product's name, description or delivery changed; carries the whole new state."""

    event_type: ClassVar[str] = "postsale.product.updated"
    updated_at: AwareDatetime


class ProductArchived(_Product):
    """A product can no longer be put in offers. Existing access is not changed."""

    event_type: ClassVar[str] = "postsale.product.archived"
    archived_at: AwareDatetime


# --- entitlements.access.v1 -----------------------------------------------------------------


class _AccessChange(Event):
    topic: ClassVar[str] = topics.ACCESS.name
    subject_field: ClassVar[str] = "entry_id"

    entry_id: str = Field(description="The access ledger entry.")
    customer_id: str
    email: str
    product_id: str
    product_name: str
    delivery_type: DeliveryType
    delivery_kind: DeliveryKind | None = Field(default=None, description=KIND_DESCRIPTION)
    reason: str = Field(description="Why, in words a seller reads: `purchase`, `full refund`, `dispute lost`, ...")
    actor: Actor
    actor_id: str | None = Field(default=None, description="Who, when a person acted (a seller's user id, ...).")
    cause_event_id: str | None = Field(default=None, description="The CloudEvents id of the event that caused it.")
    cause_event_type: str | None = None
    purchase_id: str | None = None


class AccessGranted(_AccessChange):
    """A customer may now use a product: after a purchase, or granted by the seller."""

    event_type: ClassVar[str] = "postsale.access.granted"
    granted_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(default=None, description="Empty: for good.")


class AccessRevoked(_AccessChange):
    """A customer may no longer use a product (refund, lost dispute, end of billing, seller)."""

    event_type: ClassVar[str] = "postsale.access.revoked"
    revoked_at: AwareDatetime


class AccessSuspended(_AccessChange):
    """Access is held while something is settled (an open dispute, a paused billing)."""

    event_type: ClassVar[str] = "postsale.access.suspended"
    suspended_at: AwareDatetime


class AccessRestored(_AccessChange):
    """Suspended access is back (a dispute won, a billing resumed)."""

    event_type: ClassVar[str] = "postsale.access.restored"
    restored_at: AwareDatetime


# --- entitlements.activity.v1 --------------------------------------------------------------


class ContentOpened(Event):
    """A customer opened the library, a lesson or a file. At most one per customer, kind and product
    every few minutes (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.content.opened"
    topic: ClassVar[str] = topics.ACTIVITY.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    kind: Literal["library_visit", "lesson", "download"]
    product_id: str | None = Field(default=None, description="Empty for a library visit.")
    lesson_id: str | None = None
    file_name: str | None = None
    opened_at: AwareDatetime


class ProductCompleted(Event):
    """A customer has opened every lesson of a hosted membership product. Sent once per customer and
    product (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.product.completed"
    topic: ClassVar[str] = topics.ACTIVITY.name
    subject_field: ClassVar[str] = "product_id"

    customer_id: str
    email: str
    product_id: str
    product_name: str
    lessons: int = Field(ge=1, description="How many lessons the product had when the last one was opened.")
    completed_at: AwareDatetime


# --- entitlements.deliveries.v1 -------------------------------------------------------------


class Address(Contract):
    name: str
    line1: str
    line2: str | None = None
    postal_code: str
    city: str
    region: str | None = None
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2.")


class FulfilmentRequested(Event):
    """A purchase of a product delivered outside Postsale (goods, a service, a booking, a webinar):
    everything the external system needs to fulfil it."""

    event_type: ClassVar[str] = "postsale.fulfilment.requested"
    topic: ClassVar[str] = topics.DELIVERIES.name
    subject_field: ClassVar[str] = "fulfilment_id"

    fulfilment_id: str
    purchase_id: str
    customer_id: str
    email: str
    customer_name: str | None = None
    product_id: str
    product_name: str
    kind: Literal["goods", "service", "booking", "webinar"]
    quantity: int = Field(default=1, ge=1)
    shipping_address: Address | None = None
    details: dict[str, str] = Field(default_factory=dict, description="E.g. the booked slot or the webinar session.")
    requested_at: AwareDatetime


class IntegrationCallFailed(Event):
    """A call to a third-party membership platform failed. Sent for every failed attempt."""

    event_type: ClassVar[str] = "postsale.integration_call.failed"
    topic: ClassVar[str] = topics.DELIVERIES.name
    subject_field: ClassVar[str] = "call_id"

    call_id: str
    platform: str
    action: Literal["grant", "revoke"]
    customer_id: str
    email: str
    product_id: str
    purchase_id: str | None = None
    attempt: int = Field(ge=1)
    next_retry_at: AwareDatetime | None = Field(default=None, description="Empty: no more retries.")
    error: str
    failed_at: AwareDatetime


# --- entitlements.download-links.v1 (restricted) --------------------------------------------


class DownloadLinkIssued(Event):
    """A signed, expiring link to a file product, for the email that delivers it."""

    event_type: ClassVar[str] = "postsale.download_link.issued"
    topic: ClassVar[str] = topics.DOWNLOAD_LINKS.name
    subject_field: ClassVar[str] = "link_id"

    link_id: str
    customer_id: str
    email: str
    product_id: str
    product_name: str
    file_name: str
    url: str = secret("The signed link; whoever holds it can download the file until it expires.")
    expires_at: AwareDatetime
    downloads_left: int | None = Field(default=None, ge=0, description="Empty: no limit.")
    purchase_id: str | None = None
    issued_at: AwareDatetime


# --- entitlements.license-keys.v1 (restricted) ----------------------------------------------


class LicenseKeyIssued(Event):
    """A license key was issued for a grant of a `license_key` product, for the email that delivers it.
    Sent once per key (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.license_key.issued"
    topic: ClassVar[str] = topics.LICENSE_KEYS.name
    subject_field: ClassVar[str] = "license_id"

    license_id: str
    customer_id: str
    email: str
    product_id: str
    product_name: str
    license_key: str = secret("The license key; whoever holds it can activate the software.")
    max_activations: int | None = Field(default=None, ge=1, description="Empty: no limit.")
    expires_at: AwareDatetime | None = Field(default=None, description="Empty: never.")
    purchase_id: str | None = None
    issued_at: AwareDatetime
