"""The seller's admin API: offers and their price models, coupons, carts, purchases, returned payments.

Every input has limits here, at the edge; a request that breaks one gets a 422 with a message
and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from postsale.checkout import handlers, offers
from postsale.checkout.adapters.tables import (Coupon, Dispute, Offer, Payment, Purchase, Refund, ReturnedPayment,
                                              Subscription)
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.billing_cycle import SelfService
from postsale.checkout.domain.coupons import CouponRules, normalize_code
from postsale.checkout.domain.funnel import MAX_STEPS, FunnelStep
from postsale.checkout.domain.post_purchase import PostPurchase
from postsale.checkout.entrypoints.admin_billing import Money, SubscriptionOut, subscription_out
from postsale.contracts import AccessPolicy
from postsale.runtime.db import SessionDep
from postsale.runtime.web import Moment, RequestBody, normalize_email, require_admin

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])
Id = Field(min_length=1, max_length=64)
# Pydantic's bound only keeps absurd numbers (2^63) out; the domain then applies the
# per-currency maximum with a message naming it.
AMOUNT_BOUND = 10**12


class Price(RequestBody):
    amount: int = Field(ge=0, le=AMOUNT_BOUND, description="Minor units, e.g. 4900 for 49.00; 0 for a free offer.")
    currency: str = Field(pattern="^[A-Za-z]{3}$", description="ISO 4217, e.g. EUR.")


class Billing(RequestBody):
    """How the offer is paid. The price is the one-time price, each renewal or instalment, or
    (pay what you want) the suggested amount."""

    type: Literal["one_time", "free", "subscription", "payment_plan", "pay_what_you_want"] = "one_time"
    interval: Literal["day", "week", "month", "year"] | None = Field(
        default=None, description="Subscriptions and payment plans: the billing period's unit.")
    interval_count: int = Field(default=1, ge=1, le=365, description="Periods of `interval` between payments.")
    trial_days: int = Field(default=0, ge=0, le=365, description="Subscriptions: days free before the first payment.")
    instalments: int | None = Field(default=None, ge=2, le=60, description="Payment plans: how many payments.")
    minimum: int | None = Field(default=None, ge=0, le=AMOUNT_BOUND,
                                description="Pay what you want: the least a buyer may pay, in minor units.")


class UpsellStep(RequestBody):
    offer_id: str = Id
    downsell_offer_id: str | None = Field(default=None, min_length=1, max_length=64,
                                          description="Shown when the buyer declines `offer_id`.")


class PostPurchaseSettings(RequestBody):
    """What follows the payment, for new customers (a returning customer goes to the library)."""

    require_password: bool = Field(default=False, description="Ask for a password on the payment page; no account "
                                                               "page follows. Wins over `skip_account_page`.")
    skip_account_page: bool = Field(default=False, description="Only with the destination `landing_page`.")
    send_welcome_email: bool = Field(default=True, description="With the account page skipped: email the setup link.")
    destination: Literal["library", "thank_you", "landing_page"] = "library"
    landing_page_url: str | None = Field(default=None, max_length=2000)

    def domain(self) -> PostPurchase:
        return PostPurchase(**self.model_dump())


class SelfServiceSettings(RequestBody):
    """What the customer may do on the billing page (payment plans are never cancelled by the customer)."""

    cancel: bool = True
    update_card: bool = True
    receipts: bool = True


class NewOffer(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    price: Price
    billing: Billing = Billing()
    product_ids: list[str] = Field(min_length=1, max_length=50)
    order_bump_offer_id: str | None = Field(default=None, min_length=1, max_length=64)
    upsells: list[UpsellStep] = Field(default_factory=list, max_length=MAX_STEPS)
    post_purchase: PostPurchaseSettings = PostPurchaseSettings()
    access_policy: AccessPolicy = Field(default_factory=AccessPolicy, description=(
        "How access follows billing: for how many days, and on cancellation, pause and partial refund. "
        "Postsale's defaults unless set."))
    self_service: SelfServiceSettings = SelfServiceSettings()
    send_confirmation_email: bool = True
    send_recovery_email: bool = Field(default=True, description=(
        "Remind a buyer who gave an email and did not pay within the store's recovery delay (one email, "
        "never after paying). Carried on `CheckoutAbandoned`."))


class OfferOut(BaseModel):
    id: str
    name: str
    price: Price
    billing: Billing
    price_description: str
    product_ids: list[str]
    order_bump_offer_id: str | None
    upsells: list[UpsellStep]
    post_purchase: PostPurchaseSettings
    access_policy: AccessPolicy
    self_service: SelfServiceSettings
    send_confirmation_email: bool
    send_recovery_email: bool
    checkout_url: str


def _offer_out(request: Request, offer: Offer) -> OfferOut:
    terms = handlers.offer_terms(offer)
    return OfferOut(
        id=offer.id, name=offer.name, price=Price(amount=offer.price_amount, currency=offer.currency),
        billing=Billing(type=terms.type, interval=terms.interval, interval_count=terms.interval_count,
                        trial_days=terms.trial_days, instalments=terms.instalments, minimum=terms.minimum),
        price_description=terms.describe(), product_ids=offer.product_ids,
        order_bump_offer_id=offer.order_bump_offer_id, upsells=[UpsellStep(**step) for step in offer.upsells],
        post_purchase=PostPurchaseSettings(**offer.post_purchase), access_policy=AccessPolicy(**offer.access_policy),
        self_service=SelfServiceSettings(**offer.self_service), send_confirmation_email=offer.send_confirmation_email,
        send_recovery_email=offer.send_recovery_email, checkout_url=f"{request.app.state.urls.checkout_url}/offers/{offer.id}",
    )


def _unprocessable(exc: handlers.CheckoutError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(exc))


@admin.post("/offers", status_code=201, response_model=OfferOut)
def create_offer(body: NewOffer, request: Request, session: SessionDep) -> OfferOut:
    billing = body.billing
    terms = BillingTerms(type=billing.type, amount=body.price.amount, currency=body.price.currency.upper(),
                         interval=billing.interval, interval_count=billing.interval_count,
                         trial_days=billing.trial_days, instalments=billing.instalments, minimum=billing.minimum)
    try:
        offer = offers.create_offer(
            session, name=body.name, terms=terms, product_ids=body.product_ids,
            order_bump_offer_id=body.order_bump_offer_id,
            upsells=[FunnelStep(step.offer_id, step.downsell_offer_id) for step in body.upsells],
            post_purchase=body.post_purchase.domain(), access_policy=body.access_policy,
            self_service=SelfService(**body.self_service.model_dump()),
            send_confirmation_email=body.send_confirmation_email, send_recovery_email=body.send_recovery_email)
    except handlers.CheckoutError as exc:
        raise _unprocessable(exc) from exc
    session.commit()
    return _offer_out(request, offer)


@admin.get("/offers/{offer_id}", response_model=OfferOut)
def get_offer(offer_id: str, request: Request, session: SessionDep) -> OfferOut:
    offer = session.get(Offer, offer_id)
    if offer is None:
        raise HTTPException(status_code=404, detail=f"no offer {offer_id}")
    return _offer_out(request, offer)


class StoreSettingsBody(RequestBody):
    recovery_delay_minutes: int = Field(ge=1, le=offers.MAX_RECOVERY_DELAY_MINUTES, description=(
        "How long after giving an email an unpaid checkout counts as abandoned (`CheckoutAbandoned`, the "
        "recovery email of offers that send one). Default 60."))


@admin.get("/checkout-settings", response_model=StoreSettingsBody)
def get_settings(session: SessionDep) -> StoreSettingsBody:
    """The store's checkout settings."""
    return StoreSettingsBody(recovery_delay_minutes=offers.store_settings(session).recovery_delay_minutes)


@admin.put("/checkout-settings", response_model=StoreSettingsBody)
def put_settings(body: StoreSettingsBody, session: SessionDep) -> StoreSettingsBody:
    """Changes the store's checkout settings; a new recovery delay counts for checkouts started from now on."""
    try:
        settings = offers.update_store_settings(session, recovery_delay_minutes=body.recovery_delay_minutes)
    except handlers.CheckoutError as exc:
        raise _unprocessable(exc) from exc
    session.commit()
    return StoreSettingsBody(recovery_delay_minutes=settings.recovery_delay_minutes)


class NewCoupon(RequestBody):
    code: str = Field(min_length=2, max_length=40, description="What buyers type; case does not matter.")
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: int | None = Field(default=None, gt=0, le=AMOUNT_BOUND, description="Minor units of `currency`.")
    currency: str | None = Field(default=None, pattern="^[A-Za-z]{3}$")
    duration: Literal["once", "repeating", "forever"] = Field(
        default="once", description="For subscriptions: the first payment only, `duration_periods` payments, or all.")
    duration_periods: int | None = Field(default=None, ge=1, le=120)
    expires_at: Moment | None = None
    max_redemptions: int | None = Field(default=None, ge=1, le=10**9)
    offer_ids: list[str] = Field(default_factory=list, max_length=100, description="Empty: every offer.")


class CouponOut(NewCoupon):
    id: str
    redemptions: int


def _coupon_out(coupon: Coupon) -> CouponOut:
    return CouponOut(id=coupon.id, code=coupon.code, percent_off=coupon.percent_off, amount_off=coupon.amount_off,
                     currency=coupon.currency, duration=coupon.duration, duration_periods=coupon.duration_periods,
                     expires_at=handlers.coupon_rules(coupon).expires_at, max_redemptions=coupon.max_redemptions,
                     offer_ids=coupon.offer_ids, redemptions=coupon.redemptions)


@admin.post("/coupons", status_code=201, response_model=CouponOut)
def create_coupon(body: NewCoupon, session: SessionDep) -> CouponOut:
    rules = CouponRules(
        code=normalize_code(body.code), kind="percent" if body.percent_off is not None else "fixed",
        percent_off=body.percent_off, amount_off=body.amount_off,
        currency=body.currency.upper() if body.currency else None, duration=body.duration,
        duration_periods=body.duration_periods, expires_at=body.expires_at, max_redemptions=body.max_redemptions,
        offer_ids=tuple(body.offer_ids))
    try:
        coupon = offers.create_coupon(session, rules)
    except handlers.CheckoutError as exc:
        raise _unprocessable(exc) from exc
    session.commit()
    return _coupon_out(coupon)


@admin.get("/coupons", response_model=list[CouponOut])
def list_coupons(session: SessionDep) -> list[CouponOut]:
    return [_coupon_out(c) for c in session.exec(select(Coupon).order_by(Coupon.created_at)).all()]


class NewCart(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    offer_ids: list[str] = Field(min_length=1, max_length=offers.MAX_CART_OFFERS)
    post_purchase: PostPurchaseSettings = PostPurchaseSettings()


class CartOut(NewCart):
    id: str
    checkout_url: str


@admin.post("/carts", status_code=201, response_model=CartOut)
def create_cart(body: NewCart, request: Request, session: SessionDep) -> CartOut:
    try:
        cart = offers.create_cart(session, name=body.name, offer_ids=body.offer_ids,
                                    post_purchase=body.post_purchase.domain())
    except handlers.CheckoutError as exc:
        raise _unprocessable(exc) from exc
    session.commit()
    return CartOut(id=cart.id, name=cart.name, offer_ids=cart.offer_ids,
                   post_purchase=PostPurchaseSettings(**cart.post_purchase),
                   checkout_url=f"{request.app.state.urls.checkout_url}/carts/{cart.id}")


class PurchaseOut(BaseModel):
    id: str
    customer_id: str
    email: str
    offer_id: str
    price: Money
    provider: str
    provider_payment_id: str
    parent_purchase_id: str | None
    subscription_id: str | None
    coupon_code: str | None
    completed_at: datetime


class PaymentOut(BaseModel):
    id: str
    kind: str = Field(description="`checkout` (the first payment, shared by an order bump or a cart) or "
                                  "`upsell:<offer id>`.")
    amount: Money
    provider: str
    provider_payment_id: str
    paid_at: datetime


class RefundOut(BaseModel):
    id: str
    amount: Money
    actor: str
    reason: str | None
    refunded_at: datetime


class DisputeOut(BaseModel):
    id: str
    status: str
    reason: str | None
    opened_at: datetime
    closed_at: datetime | None


class PurchaseDetail(PurchaseOut):
    refunded: Money
    refunds: list[RefundOut]
    disputes: list[DisputeOut]
    payments: list[PaymentOut]
    upsells: list[PurchaseOut] = Field(description="Purchases made after this one in the same checkout: the order "
                                                   "bump and accepted upsells.")
    subscription: SubscriptionOut | None


def _purchase_out(p: Purchase) -> PurchaseOut:
    return PurchaseOut(id=p.id, customer_id=p.customer_id, email=p.email, offer_id=p.offer_id,
                       price=Money(amount=p.amount, currency=p.currency), provider=p.provider,
                       provider_payment_id=p.provider_payment_id, parent_purchase_id=p.parent_purchase_id,
                       subscription_id=p.subscription_id, coupon_code=p.coupon_code, completed_at=p.completed_at)


@admin.get("/purchases", response_model=list[PurchaseOut])
def list_purchases(session: SessionDep, email: str | None = None, offer_id: str | None = None) -> list[PurchaseOut]:
    query = select(Purchase).order_by(Purchase.completed_at)
    if email:
        query = query.where(Purchase.email == (normalize_email(email[:254]) or email[:254]))
    if offer_id:
        query = query.where(Purchase.offer_id == offer_id[:64])
    return [_purchase_out(p) for p in session.exec(query).all()]


@admin.get("/purchases/{purchase_id}", response_model=PurchaseDetail)
def get_purchase(purchase_id: str, session: SessionDep) -> PurchaseDetail:
    purchase = session.get(Purchase, purchase_id[:64])
    if purchase is None:
        raise HTTPException(status_code=404, detail=f"no purchase {purchase_id[:64]}")
    payments = session.exec(select(Payment).where(
        (Payment.id == purchase.payment_id)
        | (Payment.subscription_id == purchase.subscription_id) if purchase.subscription_id
        else Payment.id == purchase.payment_id).order_by(Payment.paid_at)).all()
    children = session.exec(select(Purchase).where(Purchase.parent_purchase_id == purchase.id)
                            .order_by(Purchase.completed_at)).all()
    subscription = session.get(Subscription, purchase.subscription_id) if purchase.subscription_id else None
    refunds = session.exec(select(Refund).where(Refund.purchase_id == purchase.id).order_by(Refund.refunded_at)).all()
    disputes = session.exec(select(Dispute).where(Dispute.purchase_id == purchase.id)).all()
    return PurchaseDetail(
        **_purchase_out(purchase).model_dump(),
        refunded=Money(amount=purchase.refunded, currency=purchase.currency),
        refunds=[RefundOut(id=r.id, amount=Money(amount=r.amount, currency=r.currency), actor=r.actor, reason=r.reason,
                           refunded_at=r.refunded_at) for r in refunds],
        disputes=[DisputeOut(id=d.id, status=d.status, reason=d.reason, opened_at=d.opened_at, closed_at=d.closed_at)
                  for d in disputes],
        payments=[PaymentOut(id=p.id, kind=p.step, amount=Money(amount=p.amount, currency=p.currency),
                             provider=p.provider, provider_payment_id=p.provider_payment_id, paid_at=p.paid_at)
                  for p in payments],
        upsells=[_purchase_out(c) for c in children],
        subscription=subscription_out(session, subscription) if subscription else None,
    )


class ReturnedPaymentOut(BaseModel):
    """A payment checkout gave back instead of completing its attempt: never a purchase."""

    id: str
    email: str
    amount: Money = Field(description="What the buyer paid, refunded in full.")
    provider: str
    provider_payment_id: str
    reason: str = Field(description="Why it could not be taken: what the attempt charges instead.")
    status: Literal["refunding", "refunded", "failed"] = Field(
        description="`failed`: the provider refused the refund (`message` says why); refund it in its dashboard.")
    provider_refund_id: str | None
    message: str | None
    returned_at: datetime
    refunded_at: datetime | None


@admin.get("/returned-payments", response_model=list[ReturnedPaymentOut])
def list_returned_payments(session: SessionDep, email: str | None = None) -> list[ReturnedPaymentOut]:
    """Payments whose amount or currency was not what their attempt charged (the buyer changed the
    order after the payment was started), refunded automatically; newest first."""
    query = select(ReturnedPayment).order_by(ReturnedPayment.returned_at.desc())  # type: ignore[attr-defined]
    if email:
        query = query.where(ReturnedPayment.email == (normalize_email(email[:254]) or email[:254]))
    return [ReturnedPaymentOut(
        id=r.id, email=r.email, amount=Money(amount=r.amount, currency=r.currency), provider=r.provider,
        provider_payment_id=r.provider_payment_id, reason=r.reason, status=r.status,  # type: ignore[arg-type]
        provider_refund_id=r.provider_refund_id, message=r.message, returned_at=r.returned_at,
        refunded_at=r.refunded_at) for r in session.exec(query.limit(500)).all()]
