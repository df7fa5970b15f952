"""Checkout's events: `checkout.purchases.v1`, `checkout.subscriptions.v1` and `checkout.checkouts.v1`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Event, Money
from postsale.contracts.events.common import Actor, AccessPolicy, BillingKind, PaymentKind, PurchasedProduct


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


class UpsellDeclined(Event):
    """After a purchase, the customer said no to an upsell or downsell offered in its funnel (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.upsell.declined"
    topic: ClassVar[str] = topics.PURCHASES.name
    subject_field: ClassVar[str] = "purchase_id"

    purchase_id: str = Field(description="The purchase whose funnel offered the upsell.")
    customer_id: str
    email: str
    offer_id: str = Field(description="The upsell or downsell offer declined.")
    offer_name: str
    declined_at: AwareDatetime


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


class CardExpiring(_Billing):
    """The saved card expires before the billing's next payment. Sent once per card and billing, about
    30 days before the card's last valid day, so the customer can update it before a payment fails
    (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.card.expiring"
    card_brand: str | None = Field(default=None, description="E.g. `visa`, as the provider names it.")
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    card_exp_month: int = Field(ge=1, le=12)
    card_exp_year: int = Field(ge=2000, le=2200)
    next_payment_at: AwareDatetime = Field(description="The payment the card would fail.")
    noticed_at: AwareDatetime


# --- checkout.checkouts.v1 ------------------------------------------------------------------


class CheckoutAbandoned(Event):
    """A buyer gave an email on an offer's checkout and did not pay within the recovery delay (an hour by
    default). Sent at most once per checkout, and never for a checkout that was paid (added in 1.2)."""

    event_type: ClassVar[str] = "postsale.checkout.abandoned"
    topic: ClassVar[str] = topics.CHECKOUTS.name
    subject_field: ClassVar[str] = "checkout_id"
    key_field: ClassVar[str] = "email"

    checkout_id: str = Field(description="Checkout's attempt.")
    email: str
    customer_id: str | None = Field(default=None, description="Set when the email belongs to a known customer.")
    offer_id: str
    offer_name: str
    amount: Money = Field(description="What the buyer was about to pay.")
    resume_url: str = Field(description="The offer's checkout page, with the email filled in. Signs no one in.")
    send_recovery_email: bool = Field(default=True, description="The seller's per-offer setting.")
    started_at: AwareDatetime
    abandoned_at: AwareDatetime
