"""The v1 events. Every event carries what its subscribers need without calling back."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Contract, Event, Money

DeliveryType = Literal["membership", "integration", "download", "none"]
Actor = Literal["customer", "seller", "system", "provider"]


class PurchasedProduct(Contract):
    product_id: str
    name: str
    delivery_type: DeliveryType


class PurchaseCompleted(Event):
    """A customer paid for an offer. Sent once per purchase, after the payment succeeded."""

    event_type: ClassVar[str] = "postsale.purchase.completed"
    topic: ClassVar[str] = topics.PURCHASES.name

    purchase_id: str
    customer_id: str
    email: str
    offer_id: str
    offer_name: str
    products: list[PurchasedProduct] = Field(description="What the offer grants.")
    amount: Money
    provider: str = Field(description="Payment provider: `sandbox` or `stripe`.")
    provider_payment_id: str
    completed_at: AwareDatetime
    parent_purchase_id: str | None = Field(
        default=None, description="For an upsell accepted after another purchase, that purchase."
    )
    new_customer: bool = Field(description="No account existed for this email when the customer paid.")
    account_setup_token_sha256: str | None = Field(
        default=None,
        description=(
            "SHA-256 (hex) of the single-use account setup token that checkout handed to the buyer's "
            "browser. Only the hash travels on this topic, so no subscriber can use it to set up the "
            "account; accounts compares it with the token the browser presents."
        ),
    )
    send_confirmation_email: bool = Field(default=True, description="The seller's per-offer setting.")

    def subject(self) -> str:
        return self.purchase_id

    def key(self) -> str:
        return self.customer_id


class ProductPublished(Event):
    """A product was created or changed. The topic is compacted: the latest per product stays."""

    event_type: ClassVar[str] = "postsale.product.published"
    topic: ClassVar[str] = topics.PRODUCTS.name

    product_id: str
    name: str
    description: str = ""
    delivery_type: DeliveryType
    published_at: AwareDatetime

    def subject(self) -> str:
        return self.product_id

    def key(self) -> str:
        return self.product_id


class AccessGranted(Event):
    """A customer may now use a product. One per ledger entry."""

    event_type: ClassVar[str] = "postsale.access.granted"
    topic: ClassVar[str] = topics.ACCESS.name

    grant_id: str
    customer_id: str
    email: str
    product_id: str
    product_name: str
    delivery_type: DeliveryType
    reason: str = Field(description="Why, in words a seller reads: `purchase`, `manual grant`, ...")
    actor: Actor
    cause_event_id: str | None = Field(default=None, description="The event that caused the grant.")
    purchase_id: str | None = None
    granted_at: AwareDatetime
    expires_at: AwareDatetime | None = None

    def subject(self) -> str:
        return self.grant_id

    def key(self) -> str:
        return self.customer_id


class CustomerRegistered(Event):
    """Accounts knows a new customer (after a first purchase, or added by the seller)."""

    event_type: ClassVar[str] = "postsale.customer.registered"
    topic: ClassVar[str] = topics.CUSTOMERS.name

    customer_id: str
    email: str
    registered_at: AwareDatetime

    def subject(self) -> str:
        return self.customer_id

    def key(self) -> str:
        return self.customer_id


class AccountActivated(Event):
    """The customer set a password: the account can log in from now on."""

    event_type: ClassVar[str] = "postsale.account.activated"
    topic: ClassVar[str] = topics.CUSTOMERS.name

    customer_id: str
    email: str
    first_name: str
    last_name: str
    activated_at: AwareDatetime

    def subject(self) -> str:
        return self.customer_id

    def key(self) -> str:
        return self.customer_id


class EmailSent(Event):
    """An email was handed to the SMTP relay."""

    event_type: ClassVar[str] = "postsale.email.sent"
    topic: ClassVar[str] = topics.EMAILS.name

    email_key: str = Field(description="Unique per email, e.g. `purchase-confirmation:<purchase id>`.")
    template: str
    to: str
    customer_id: str | None = None
    sent_at: AwareDatetime

    def subject(self) -> str:
        return self.email_key

    def key(self) -> str:
        return self.to
