from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from postsale.runtime.clock import utcnow
from postsale.runtime.db import keep_loaded, table_registry
from postsale.runtime.scheduler import DueRow, pending_index


class Base(SQLModel, registry=table_registry()):
    """The checkout service's tables, made by its migrations (`postsale/checkout/migrations/`)."""


class CatalogProduct(Base, table=True):
    """Read model of entitlements' products, from `entitlements.products.v1`."""

    __tablename__ = "catalog_products"

    id: str = Field(primary_key=True)
    name: str
    description: str = ""
    delivery_type: str
    updated_at: datetime = Field(default_factory=utcnow)
    archived_at: datetime | None = None  # no new offer may take it


class Customer(Base, table=True):
    """Who bought here, and whether accounts says they have an account they can log in to."""

    __tablename__ = "customers"

    email: str = Field(primary_key=True)
    customer_id: str = Field(unique=True)
    has_account: bool = False


class Offer(Base, table=True):
    """How products are sold: the price model, the funnel around it and what follows the payment."""

    __tablename__ = "offers"

    id: str = Field(primary_key=True)
    name: str
    billing_type: str = "one_time"  # one_time | free | subscription | payment_plan | pay_what_you_want
    price_amount: int  # the price; each renewal or instalment; the suggested amount of pay what you want
    currency: str
    interval: str | None = None  # day | week | month | year
    interval_count: int = 1
    trial_days: int = 0
    instalments: int | None = None
    minimum_amount: int | None = None
    product_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    order_bump_offer_id: str | None = None
    upsells: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # FunnelStep fields
    post_purchase: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # PostPurchase fields
    access_policy: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # AccessPolicy fields
    self_service: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # SelfService fields
    send_confirmation_email: bool = True
    send_recovery_email: bool = True  # carried on `CheckoutAbandoned`: notifications sends the reminder
    created_at: datetime = Field(default_factory=utcnow)
    # The back office's new-offer form's one-time token: a form posted twice makes one offer.
    submission: str | None = Field(default=None, unique=True)


class Coupon(Base, table=True):
    __tablename__ = "coupons"
    # The database, not Python, keeps the count within the limit when buyers race for the last one.
    __table_args__ = (CheckConstraint("max_redemptions IS NULL OR redemptions <= max_redemptions",
                                      name="within_limit"),)

    id: str = Field(primary_key=True)
    code: str = Field(unique=True)  # upper case
    kind: str  # percent | fixed
    percent_off: int | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration: str = "once"  # once | repeating | forever
    duration_periods: int | None = None
    expires_at: datetime | None = None
    max_redemptions: int | None = None
    redemptions: int = 0
    offer_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CouponRedemption(Base, table=True):
    """One per coupon and purchase attempt: a retried payment never counts twice."""

    __tablename__ = "coupon_redemptions"
    __table_args__ = (UniqueConstraint("coupon_id", "checkout_session_id"),)

    id: int | None = Field(default=None, primary_key=True)
    coupon_id: str = Field(foreign_key="coupons.id")
    checkout_session_id: str = Field(foreign_key="checkout_sessions.id")
    redeemed_at: datetime = Field(default_factory=utcnow)


class Cart(Base, table=True):
    """Several offers checked out together, in one payment; its post-purchase settings win."""

    __tablename__ = "carts"

    id: str = Field(primary_key=True)
    name: str
    offer_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    post_purchase: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CheckoutSession(Base, table=True):
    """One purchase attempt. Its id is the idempotency key of every charge it makes, upsells included."""

    __tablename__ = "checkout_sessions"
    # The same email's later visits to an offer (recovery's look, once per abandoned attempt).
    __table_args__ = (Index("ix_checkout_sessions_email_offer", "email", "offer_id", "created_at"),)

    id: str = Field(primary_key=True)
    offer_id: str = Field(foreign_key="offers.id")  # the primary offer (a cart's first)
    cart_id: str | None = Field(default=None, foreign_key="carts.id")
    email: str
    status: str = "open"  # open | paid | granted (the offers a seller gave a customer added by hand)
    order_bump: bool = False  # the buyer ticked the order bump
    coupon_code: str | None = None
    chosen_amount: int | None = None  # pay what you want
    amount_due: int | None = None  # what the first payment charges, fixed when it starts
    payment_tries: int = 0  # a declined try makes the next one a new payment at the provider
    bought_before: bool = False  # the email had bought before without setting up an account
    provider: str | None = None
    provider_payment_id: str | None = Field(default=None, index=True)
    payment_method_id: str | None = None  # saved at the first payment, charged by upsells
    customer_ref: str | None = None
    funnel_step: int | None = None  # the upsell page the buyer is on; None when the funnel is over
    funnel_downsell: bool = False
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class CheckoutRecovery(DueRow, Base, table=True):
    """When an unpaid checkout counts as abandoned (the store's recovery delay after the email was
    given): one per checkout, dropped when it is paid."""

    __tablename__ = "checkout_recoveries"
    __table_args__ = (pending_index("checkout_recoveries"),)

    checkout_session_id: str = Field(foreign_key="checkout_sessions.id", unique=True)
    abandoned: bool = False  # `CheckoutAbandoned` was published


class StoreSettings(Base, table=True):
    """The seller's store-wide checkout settings: one row, `store`; defaults until the seller sets them."""

    __tablename__ = "store_settings"

    id: str = Field(default="store", primary_key=True)
    recovery_delay_minutes: int = 60
    updated_at: datetime = Field(default_factory=utcnow)


class Payment(Base, table=True):
    """A charge through a provider: the first payment of an attempt, an accepted upsell, or a
    renewal or instalment of the subscription the attempt started."""

    __tablename__ = "payments"

    id: str = Field(primary_key=True)
    # One payment per step of an attempt: `checkout` for the first, `upsell:<offer id>` for each
    # upsell, `period:<subscription id>:<period start>` for each renewal or instalment.
    checkout_session_id: str = Field(foreign_key="checkout_sessions.id")
    step: str
    subscription_id: str | None = Field(default=None, index=True)  # a renewal or instalment
    amount: int
    currency: str
    provider: str
    provider_payment_id: str = Field(index=True)
    paid_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (UniqueConstraint("checkout_session_id", "step"),)


class ReturnedPayment(Base, table=True):
    """A payment its attempt could not take (its amount or currency is not what the attempt
    charges), refunded in full and never a purchase: once per provider payment, whatever repeats."""

    __tablename__ = "returned_payments"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    id: str = Field(primary_key=True)
    checkout_session_id: str = Field(foreign_key="checkout_sessions.id", index=True)
    email: str = Field(index=True)
    provider: str
    provider_payment_id: str
    amount: int  # what the buyer paid, in minor units
    currency: str
    reason: str  # for the seller: what the attempt charges instead
    status: str = "refunding"  # refunding | refunded | failed (the provider refused: the seller must act)
    provider_refund_id: str | None = None
    message: str | None = None  # the provider's words when it refused
    returned_at: datetime
    refunded_at: datetime | None = None


class Purchase(Base, table=True):
    __tablename__ = "purchases"
    # One purchase per offer and attempt, whatever retries, double clicks or repeated webhooks do.
    __table_args__ = (UniqueConstraint("checkout_session_id", "offer_id"),)

    id: str = Field(primary_key=True)
    checkout_session_id: str = Field(foreign_key="checkout_sessions.id")
    payment_id: str | None = Field(default=None, foreign_key="payments.id", index=True)  # None: nothing charged
    parent_purchase_id: str | None = Field(default=None, index=True)
    customer_id: str = Field(index=True)
    email: str
    offer_id: str
    amount: int
    currency: str
    coupon_code: str | None = None
    provider: str
    provider_payment_id: str
    subscription_id: str | None = None
    refunded: int = 0  # refunded so far, in minor units
    completed_at: datetime = Field(default_factory=utcnow)


class Subscription(Base, table=True):
    """A subscription or payment plan started by a purchase; renewals and instalments are charged
    against its saved payment method."""

    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True)
    purchase_id: str = Field(unique=True, foreign_key="purchases.id")
    customer_id: str = Field(index=True)
    offer_id: str
    kind: str  # subscription | payment_plan
    status: str  # trialing | active | completed
    amount: int
    currency: str
    interval: str
    interval_count: int
    instalments_total: int | None = None
    instalments_paid: int = 0
    coupon_code: str | None = None
    discounted_periods_left: int | None = None  # None: the coupon lasts for ever (or there is none)
    provider: str
    payment_method_id: str | None = None
    customer_ref: str | None = None
    # The saved card as the provider describes it; empty until read (after each new card).
    card_brand: str | None = None
    card_last4: str | None = None
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    trial_end: datetime | None = None
    current_period_start: datetime
    current_period_end: datetime
    cancel_at: datetime | None = None  # a pending cancellation takes effect then
    cancel_reason: str | None = None
    cancel_actor: str | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    failed_since: datetime | None = None
    failures: int = 0
    retry_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class BillingJob(DueRow, Base, table=True):
    """The next moment the scheduler looks at a subscription: a renewal, a retry, a cancellation.
    At most one pending per subscription."""

    __tablename__ = "billing_jobs"
    __table_args__ = (
        pending_index("billing_jobs"),
        Index("uq_billing_jobs_pending_subscription", "subscription_id", unique=True,
              sqlite_where=text("done_at IS NULL"), postgresql_where=text("done_at IS NULL")),
    )

    subscription_id: str = Field(foreign_key="subscriptions.id")
    customer_id: str = Field(index=True)


class CardExpiryCheck(DueRow, Base, table=True):
    """When to look at a subscription's saved card: at once for a new card (to read it from the
    provider), then about 30 days before it expires. At most one pending per subscription."""

    __tablename__ = "card_expiry_checks"
    __table_args__ = (
        pending_index("card_expiry_checks"),
        Index("uq_card_expiry_checks_pending_subscription", "subscription_id", unique=True,
              sqlite_where=text("done_at IS NULL"), postgresql_where=text("done_at IS NULL")),
    )

    subscription_id: str = Field(foreign_key="subscriptions.id")
    customer_id: str = Field(index=True)
    payment_method_id: str


class CardExpiryNotice(Base, table=True):
    """`CardExpiring` was published: once per card and billing, whatever reschedules or retries."""

    __tablename__ = "card_expiry_notices"
    __table_args__ = (UniqueConstraint("subscription_id", "payment_method_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id")
    payment_method_id: str
    noticed_at: datetime


class ChargeAttempt(Base, table=True):
    """Every off-session charge of a subscription, failed or not: the dunning history."""

    __tablename__ = "charge_attempts"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", index=True)
    idempotency_key: str = Field(unique=True)
    amount: int
    currency: str
    succeeded: bool
    message: str | None = None
    next_retry_at: datetime | None = None
    attempted_at: datetime


class Refund(Base, table=True):
    __tablename__ = "refunds"

    id: str = Field(primary_key=True)
    purchase_id: str = Field(foreign_key="purchases.id", index=True)
    provider: str
    provider_refund_id: str = Field(unique=True)
    amount: int
    currency: str
    reason: str | None = None
    actor: str  # seller | provider
    refunded_at: datetime
    # The back office's refund form's one-time token: the same form posted twice refunds once.
    submission: str | None = Field(default=None, unique=True)


class Dispute(Base, table=True):
    """A chargeback of a payment, for each purchase the payment paid."""

    __tablename__ = "disputes"
    __table_args__ = (UniqueConstraint("provider_dispute_id", "purchase_id"),)

    id: str = Field(primary_key=True)
    purchase_id: str = Field(foreign_key="purchases.id", index=True)
    provider_dispute_id: str
    amount: int
    currency: str
    reason: str | None = None
    status: str  # open | won | lost
    opened_at: datetime
    closed_at: datetime | None = None


class SimulatedClock(Base, table=True):
    """The sandbox's lifecycle simulator: how far one test customer's time runs ahead of the wall's."""

    __tablename__ = "simulated_clocks"

    customer_id: str = Field(primary_key=True)
    offset_seconds: int = 0


class ProviderEvent(Base, table=True):
    """Every webhook accepted from a payment provider, once. One that names a payment not known
    yet (webhooks come in any order) waits, unhandled, for the purchase."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    external_id: str
    type: str
    payment_id: str | None = Field(default=None, index=True)  # the provider's payment it is about
    payload: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    handled: bool = True
    received_at: datetime = Field(default_factory=utcnow)


class SandboxPayment(Base, table=True):
    """A payment the sandbox made; what a real provider would hold on its side."""

    __tablename__ = "sandbox_payments"

    id: str = Field(primary_key=True)
    idempotency_key: str = Field(unique=True)
    attempt_id: str
    amount: int
    currency: str
    card_last4: str
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    payment_method_id: str = Field(index=True)
    status: str  # succeeded | declined | requires_action
    message: str | None = None
    refunded: int = 0
    refund_keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    disputed: bool = False
    dispute_status: str | None = None  # open | won | lost, for the 0259 card
    dispute_reported: str | None = None  # the status checkout acknowledged
    created_at: datetime = Field(default_factory=utcnow)


class PurchaseHappening(Base, table=True):
    """What another service did about a purchase, as its events tell checkout (access granted or
    taken, emails sent or given up), for the purchase's timeline in the back office: the page never
    calls the other services. One row per event (its CloudEvents id), so a redelivery adds none."""

    __tablename__ = "purchase_happenings"
    __table_args__ = (Index("ix_purchase_happenings_purchase_at", "purchase_id", "at"),)

    event_id: str = Field(primary_key=True)
    purchase_id: str
    at: datetime
    service: str  # entitlements | notifications
    kind: str  # access_granted, access_revoked, ..., email_sent, email_failed
    summary: str  # what happened, as the seller reads it


# Read by every step of a payment, several times each: kept once loaded (`keep_loaded`).
keep_loaded(Offer, CatalogProduct, Customer, StoreSettings, Cart)
