"""The v1 events. Every event carries what its subscribers need without calling back.

Money is an integer in minor units with an ISO currency; times carry their zone;
identifiers are strings. Each class's docstring says what the event means and when it is sent.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Contract, Event, Money, secret

DeliveryType = Literal["membership", "integration", "download", "none"]
DeliveryKind = Literal["membership", "integration", "download", "license_key", "none"]
# Kinds added after contracts 1.0, as a 1.0 reader (which knows only `DeliveryType`) sees them.
_NEAREST_1_0_KIND = {"license_key": "download"}
KIND_DESCRIPTION = ("How the product is delivered, including kinds added after contracts 1.0 (`license_key`); "
                    "empty from a 1.0 publisher: read `delivery_type`.")


def delivery_fields(kind: str) -> dict[str, str]:
    """`delivery_type` (the nearest kind every 1.x reader knows) and `delivery_kind` (the exact one)."""
    return {"delivery_type": _NEAREST_1_0_KIND.get(kind, kind), "delivery_kind": kind}


def delivery_kind_of(item: "PurchasedProduct | _ProductState | _AccessChange") -> str:
    """The exact delivery kind of an event or item, from a publisher of any 1.x version."""
    return item.delivery_kind or item.delivery_type
Actor = Literal["customer", "seller", "system", "provider"]
PaymentKind = Literal["renewal", "instalment"]
BillingKind = Literal["subscription", "payment_plan"]


class PurchasedProduct(Contract):
    product_id: str
    name: str
    delivery_type: DeliveryType
    delivery_kind: DeliveryKind | None = Field(default=None, description=KIND_DESCRIPTION)


class AccessPolicy(Contract):
    """How access follows billing for a purchase: the offer's policy, Postsale's defaults unless
    the seller changed them. Entitlements applies it, whatever the payment provider."""

    access_days: int | None = Field(
        default=None, ge=1, le=36500,
        description="Access lasts this many days from the purchase, then expires; empty: for good (while the "
                    "billing lasts, for a subscription or payment plan).")
    on_cancel: Literal["period_end", "now"] = Field(
        default="period_end",
        description="A cancelled subscription keeps access to the end of its paid period, or loses it as soon as "
                    "the cancellation is asked for.")
    on_pause: Literal["keep", "suspend"] = Field(default="keep", description="Access while billing is paused.")
    on_partial_refund: Literal["keep", "revoke"] = Field(default="keep", description="A full refund always revokes.")


# --- checkout.purchases.v1 ------------------------------------------------------------------


class PurchaseCompleted(Event):
    """A customer paid for an offer. Sent once per purchase, after the first payment succeeded;
    an accepted upsell is a purchase of its own, with `parent_purchase_id` set."""

    event_type: ClassVar[str] = "postsale.purchase.completed"
    topic: ClassVar[str] = topics.PURCHASES.name
    subject_field: ClassVar[str] = "purchase_id"

    purchase_id: str
    customer_id: str
    email: str
    offer_id: str
    offer_name: str
    products: list[PurchasedProduct] = Field(description="What the offer grants.")
    amount: Money = Field(description="What the customer paid for this offer, after any coupon (0 for a free offer "
                                      "or a trial).")
    provider: str = Field(description="Payment provider: `sandbox` or `stripe`; `none` when nothing was charged.")
    provider_payment_id: str = Field(description="The provider's payment; empty when nothing was charged.")
    completed_at: AwareDatetime
    order_id: str | None = Field(
        default=None,
        description="The order this purchase was paid in. An order bump or a cart's offers are purchases of "
                    "their own that share one order and one payment.",
    )
    coupon_code: str | None = Field(default=None, description="The coupon the customer redeemed, if any.")
    parent_purchase_id: str | None = Field(
        default=None, description="For an upsell accepted after another purchase, that purchase."
    )
    subscription_id: str | None = Field(
        default=None, description="For a subscription or payment plan, the billing it starts."
    )
    trial_ends_at: AwareDatetime | None = Field(
        default=None, description="For a subscription with a free trial: when its first payment is charged.")
    next_payment_at: AwareDatetime | None = Field(
        default=None, description="For a subscription or payment plan: when the next payment is due.")
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
    send_account_setup_email: bool = Field(
        default=True,
        description="For a new customer: email a link that sets up the account (the welcome email), so a buyer "
                    "who closes the tab can still get in. False only when the seller turned the welcome email off.",
    )
    access_policy: AccessPolicy = Field(default_factory=AccessPolicy,
                                        description="How access follows billing for this purchase.")
    after_setup_url: str | None = Field(
        default=None,
        description="Where a new customer goes once the account is set up (the offer's thank-you or landing "
                    "page); empty: the library.",
    )


class PurchaseRefunded(Event):
    """Money of a purchase went back to the customer, in full or in part. Sent once per refund."""

    event_type: ClassVar[str] = "postsale.purchase.refunded"
    topic: ClassVar[str] = topics.PURCHASES.name
    subject_field: ClassVar[str] = "purchase_id"

    refund_id: str
    purchase_id: str
    customer_id: str
    email: str
    amount: Money = Field(description="Refunded by this refund.")
    total_refunded: Money = Field(description="Refunded for the purchase so far, this refund included.")
    full: bool = Field(description="The whole purchase is refunded now (access is revoked by default).")
    reason: str | None = None
    actor: Actor
    refunded_at: AwareDatetime


class _Dispute(Event):
    topic: ClassVar[str] = topics.PURCHASES.name
    subject_field: ClassVar[str] = "dispute_id"

    dispute_id: str
    purchase_id: str
    customer_id: str
    email: str
    amount: Money
    provider: str


class DisputeOpened(_Dispute):
    """The customer's bank disputes a payment (a chargeback). Access is suspended by default."""

    event_type: ClassVar[str] = "postsale.dispute.opened"
    reason: str | None = Field(default=None, description="The provider's reason, e.g. `fraudulent`.")
    opened_at: AwareDatetime


class DisputeWon(_Dispute):
    """The seller won the dispute: the money stays. Suspended access is restored by default."""

    event_type: ClassVar[str] = "postsale.dispute.won"
    closed_at: AwareDatetime


class DisputeLost(_Dispute):
    """The seller lost the dispute: the money is gone. Access is revoked by default."""

    event_type: ClassVar[str] = "postsale.dispute.lost"
    closed_at: AwareDatetime


# --- checkout.subscriptions.v1 --------------------------------------------------------------


class _Billing(Event):
    topic: ClassVar[str] = topics.SUBSCRIPTIONS.name
    subject_field: ClassVar[str] = "subscription_id"

    subscription_id: str
    billing: BillingKind = Field(description="A subscription renews until cancelled; a payment plan ends after its instalments.")
    purchase_id: str = Field(description="The purchase that started the billing.")
    customer_id: str
    email: str
    offer_id: str


class PaymentSucceeded(_Billing):
    """A recurring payment went through: a renewal of a subscription or the n-th instalment of a plan."""

    event_type: ClassVar[str] = "postsale.payment.succeeded"
    subject_field: ClassVar[str] = "payment_id"

    payment_id: str
    kind: PaymentKind
    amount: Money
    instalment_number: int | None = Field(default=None, ge=1, description="For an instalment: which one, from 1.")
    instalments_total: int | None = Field(default=None, ge=1)
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = Field(default=None, description="Until when this payment pays for access.")
    paid_at: AwareDatetime


class PaymentFailed(_Billing):
    """A recurring payment failed. Sent for every attempt; `next_retry_at` is empty when dunning gives up."""

    event_type: ClassVar[str] = "postsale.payment.failed"
    subject_field: ClassVar[str] = "payment_id"

    payment_id: str
    kind: PaymentKind
    amount: Money
    instalment_number: int | None = Field(default=None, ge=1)
    attempt: int = Field(ge=1, description="1 for the first try, then each retry.")
    next_retry_at: AwareDatetime | None = Field(default=None, description="Empty: no more retries.")
    failure_message: str
    failed_at: AwareDatetime


class SubscriptionPastDue(_Billing):
    """A payment failed and retries are running. Access is kept meanwhile by default."""

    event_type: ClassVar[str] = "postsale.subscription.past_due"
    since: AwareDatetime
    grace_until: AwareDatetime | None = Field(default=None, description="When dunning gives up if no retry succeeds.")


class SubscriptionCancellationScheduled(_Billing):
    """The billing will end at `effective_at` (end of the paid period or a chosen date)."""

    event_type: ClassVar[str] = "postsale.subscription.cancellation_scheduled"
    effective_at: AwareDatetime
    actor: Actor
    reason: str | None = None
    scheduled_at: AwareDatetime


class SubscriptionCancellationUndone(_Billing):
    """A scheduled cancellation was taken back: the billing goes on and nothing else changes."""

    event_type: ClassVar[str] = "postsale.subscription.cancellation_undone"
    actor: Actor
    undone_at: AwareDatetime


class SubscriptionCancelled(_Billing):
    """The billing has ended (at once, on its date, or because dunning gave up)."""

    event_type: ClassVar[str] = "postsale.subscription.cancelled"
    effective_at: AwareDatetime = Field(description="When the billing ended; access ends then by default.")
    actor: Actor
    reason: str | None = Field(default=None, description="E.g. `customer request`, `payment failed`.")
    cancelled_at: AwareDatetime


class SubscriptionPaused(_Billing):
    """No payments are taken until the billing resumes. Access is kept by default."""

    event_type: ClassVar[str] = "postsale.subscription.paused"
    actor: Actor
    paused_at: AwareDatetime
    resumes_at: AwareDatetime | None = Field(default=None, description="Empty: paused until resumed by hand.")


class SubscriptionResumed(_Billing):
    """Payments start again after a pause."""

    event_type: ClassVar[str] = "postsale.subscription.resumed"
    actor: Actor
    resumed_at: AwareDatetime


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


# --- accounts.customers.v1 ------------------------------------------------------------------


class CustomerRegistered(Event):
    """Accounts knows a new customer: after a first purchase, or added by the seller."""

    event_type: ClassVar[str] = "postsale.customer.registered"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    source: Literal["purchase", "seller"] = "purchase"
    registered_at: AwareDatetime
    offer_ids: list[str] = Field(
        default_factory=list, max_length=50,
        description="For a customer the seller added by hand: the offers the seller asked to grant, for checkout "
                    "to turn into purchases without payment. Empty otherwise.")


class AccountActivated(Event):
    """The customer set a password: the account can log in from now on."""

    event_type: ClassVar[str] = "postsale.account.activated"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    first_name: str
    last_name: str
    activated_at: AwareDatetime


class CustomerActivity(Event):
    """The customer did something the seller may want to see: logged in, opened the library,
    a lesson or a download. At most one per kind and product a minute."""

    event_type: ClassVar[str] = "postsale.customer.activity"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    kind: Literal["login", "library_visit", "lesson", "download"]
    product_id: str | None = None
    occurred_at: AwareDatetime


SessionEndReason = Literal["logout", "password_changed", "email_changed", "replaced", "seller"]


class SessionEnded(Event):
    """A login session ended before its token expired (logout, a password or email change, a new login
    in the same browser). Every service refuses the session's token from now on; a service keeps the
    id until `expires_at`, after which the token is refused anyway. Carries no secret: the session id
    alone signs no one in."""

    event_type: ClassVar[str] = "postsale.session.ended"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "session_id"

    customer_id: str
    session_id: str = Field(description="The `sid` claim of the session's tokens.")
    reason: SessionEndReason
    ended_at: AwareDatetime
    expires_at: AwareDatetime = Field(description="When the session's token would have expired anyway.")


class CustomerEmailChanged(Event):
    """The customer changed the login email, confirmed from the new address. Keyed by customer id:
    the customer id stays, only the address changes."""

    event_type: ClassVar[str] = "postsale.customer.email_changed"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    old_email: str
    new_email: str
    changed_at: AwareDatetime


class ThemeChanged(Event):
    """The seller's theme of the customer pages (account setup, login, library) changed; carries the
    whole theme. Colours are `#rrggbb`; an empty field means Postsale's default. Every service that
    renders customer pages applies the newest one (`postsale.runtime.theme` turns it into CSS)."""

    event_type: ClassVar[str] = "postsale.theme.changed"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "theme_id"
    key_field: ClassVar[str] = "theme_id"

    theme_id: str = Field(default="store", description="One theme per store: always `store`.")
    settings: dict[str, str | int | None] = Field(
        description="The theme's settings by name, as `PUT /admin/theme` of accounts takes them.")
    changed_at: AwareDatetime


# --- accounts.account-links.v1 (restricted) -------------------------------------------------


class _AccountLink(Event):
    topic: ClassVar[str] = topics.ACCOUNT_LINKS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    expires_at: AwareDatetime


class AccountSetupLinkIssued(_AccountLink):
    """A link that lets a customer set up an account later: welcome email, resend, or a customer
    the seller added by hand."""

    event_type: ClassVar[str] = "postsale.account_setup_link.issued"
    url: str = secret("Single-use link to the account setup page.")
    reason: Literal["welcome", "resend", "added_by_seller"]
    issued_at: AwareDatetime


class LoginLinkIssued(_AccountLink):
    """The customer asked to log in by email: a link (whose page has the sign-in button, so mail
    scanners cannot use it up) and a one-time code as the alternative."""

    event_type: ClassVar[str] = "postsale.login_link.issued"
    url: str = secret("Single-use login link.")
    code: str = secret("One-time login code.")
    issued_at: AwareDatetime
    reason: Literal["customer", "seller"] = Field(
        default="customer", description="`seller`: the seller sent it for a customer who could not log in.")


class PasswordResetRequested(_AccountLink):
    """The customer asked to reset the password."""

    event_type: ClassVar[str] = "postsale.password_reset.requested"
    url: str = secret("Single-use link to the new-password page.")
    code: str = secret("One-time reset code.")
    requested_at: AwareDatetime


class EmailChangeRequested(_AccountLink):
    """A logged-in customer asked to change the login email: a link to confirm it, for the email sent
    to the new address (`new_email`); `email` is the current one, which may be told of the request."""

    event_type: ClassVar[str] = "postsale.email_change.requested"
    new_email: str
    url: str = secret("Single-use link that confirms the new address.")
    requested_at: AwareDatetime


# --- notifications.emails.v1 ----------------------------------------------------------------


class _Email(Event):
    topic: ClassVar[str] = topics.EMAILS.name
    subject_field: ClassVar[str] = "email_key"
    key_field: ClassVar[str] = "to"

    email_key: str = Field(description="Unique per email, e.g. `purchase-confirmation:<purchase id>`.")
    template: str
    to: str
    customer_id: str | None = None


class EmailSent(_Email):
    """An email was handed to the SMTP relay."""

    event_type: ClassVar[str] = "postsale.email.sent"
    sent_at: AwareDatetime


class EmailFailed(_Email):
    """Sending an email was given up after its retries."""

    event_type: ClassVar[str] = "postsale.email.failed"
    attempts: int = Field(ge=1)
    error: str
    failed_at: AwareDatetime


ALL_EVENTS: tuple[type[Event], ...] = (
    PurchaseCompleted, PurchaseRefunded, DisputeOpened, DisputeWon, DisputeLost,
    PaymentSucceeded, PaymentFailed, SubscriptionPastDue, SubscriptionCancellationScheduled,
    SubscriptionCancellationUndone, SubscriptionCancelled, SubscriptionPaused, SubscriptionResumed,
    ProductPublished, ProductUpdated, ProductArchived,
    AccessGranted, AccessRevoked, AccessSuspended, AccessRestored,
    FulfilmentRequested, IntegrationCallFailed, DownloadLinkIssued,
    CustomerRegistered, AccountActivated, CustomerActivity, SessionEnded, CustomerEmailChanged, ThemeChanged,
    AccountSetupLinkIssued, LoginLinkIssued, PasswordResetRequested, EmailChangeRequested,
    EmailSent, EmailFailed,
)
