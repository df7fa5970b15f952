"""The seller's side of checkout: offers and their price models, coupons, carts.

Each use case runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict

from sqlmodel import Session, select

from postsale.checkout.adapters.tables import CatalogProduct, Cart, Coupon, Offer, StoreSettings
from postsale.checkout.domain.billing import BillingTerms, terms_problem
from postsale.checkout.domain.billing_cycle import SelfService
from postsale.checkout.domain.coupons import CouponRules, rules_problem
from postsale.checkout.domain.funnel import MAX_STEPS, FunnelStep
from postsale.checkout.domain.post_purchase import PostPurchase, settings_problem
from postsale.checkout.errors import CheckoutError
from postsale.contracts import AccessPolicy
from postsale.runtime.clock import utcnow

MAX_CART_OFFERS = 20
MAX_RECOVERY_DELAY_MINUTES = 7 * 24 * 60


def offers_by_id(session: Session, offer_ids: list[str]) -> dict[str, Offer]:
    if not offer_ids:
        return {}
    return {o.id: o for o in session.exec(select(Offer).where(Offer.id.in_(offer_ids))).all()}  # type: ignore[attr-defined]


def _require_offers(session: Session, offer_ids: list[str]) -> dict[str, Offer]:
    offers = offers_by_id(session, offer_ids)
    unknown = [o for o in dict.fromkeys(offer_ids) if o not in offers]
    if unknown:
        raise CheckoutError(f"unknown offer id(s): {', '.join(unknown)}")
    return offers


def _check_add_on(offer: Offer, add_on: Offer, role: str) -> None:
    """An order bump or an upsell is a one-time offer in the primary offer's currency."""
    if add_on.billing_type != "one_time":
        raise CheckoutError(f"The {role} {add_on.id} must be a one-time offer.")
    if add_on.currency != offer.currency:
        raise CheckoutError(f"The {role} {add_on.id} must be priced in {offer.currency}, as the offer is.")


def create_offer(session: Session, *, name: str, terms: BillingTerms, product_ids: list[str],
                 order_bump_offer_id: str | None = None, upsells: list[FunnelStep] = (),  # type: ignore[assignment]
                 post_purchase: PostPurchase = PostPurchase(), access_policy: AccessPolicy = AccessPolicy(),
                 self_service: SelfService = SelfService(), send_confirmation_email: bool = True,
                 send_recovery_email: bool = True) -> Offer:
    problem = terms_problem(terms) or settings_problem(post_purchase)
    if problem:
        raise CheckoutError(problem)
    known = set(session.exec(select(CatalogProduct.id).where(CatalogProduct.id.in_(product_ids))).all())  # type: ignore[attr-defined]
    unknown = [p for p in product_ids if p not in known]
    if unknown:
        raise CheckoutError(f"unknown product id(s): {', '.join(unknown)}")
    if len(upsells) > MAX_STEPS:
        raise CheckoutError(f"A funnel has at most {MAX_STEPS} upsell steps.")
    offer = Offer(
        id=f"offer_{uuid.uuid4().hex[:16]}", name=name, billing_type=terms.type, price_amount=terms.amount,
        currency=terms.currency, interval=terms.interval, interval_count=terms.interval_count,
        trial_days=terms.trial_days, instalments=terms.instalments, minimum_amount=terms.minimum,
        product_ids=list(dict.fromkeys(product_ids)), order_bump_offer_id=order_bump_offer_id,
        upsells=[asdict(step) for step in upsells], post_purchase=asdict(post_purchase),
        access_policy=access_policy.model_dump(exclude_defaults=True), self_service=asdict(self_service),
        send_confirmation_email=send_confirmation_email, send_recovery_email=send_recovery_email,
    )
    add_ons = [order_bump_offer_id] if order_bump_offer_id else []
    add_ons += [o for step in upsells for o in (step.offer_id, step.downsell_offer_id) if o]
    if (upsells or order_bump_offer_id) and terms.type == "free":
        raise CheckoutError("A free offer takes no payment, so it can have no order bump or upsells.")
    for add_on_id, add_on in _require_offers(session, add_ons).items():
        _check_add_on(offer, add_on, "order bump" if add_on_id == order_bump_offer_id else "upsell")
    session.add(offer)
    return offer


def create_coupon(session: Session, rules: CouponRules) -> Coupon:
    problem = rules_problem(rules)
    if problem:
        raise CheckoutError(problem)
    _require_offers(session, list(rules.offer_ids))
    if session.exec(select(Coupon).where(Coupon.code == rules.code)).first() is not None:
        raise CheckoutError(f"A coupon with the code {rules.code} exists already.")
    coupon = Coupon(id=f"coupon_{uuid.uuid4().hex[:16]}", code=rules.code, kind=rules.kind,
                    percent_off=rules.percent_off, amount_off=rules.amount_off, currency=rules.currency,
                    duration=rules.duration, duration_periods=rules.duration_periods, expires_at=rules.expires_at,
                    max_redemptions=rules.max_redemptions, offer_ids=list(rules.offer_ids))
    session.add(coupon)
    return coupon


def create_cart(session: Session, *, name: str, offer_ids: list[str], post_purchase: PostPurchase) -> Cart:
    problem = settings_problem(post_purchase)
    if problem:
        raise CheckoutError(problem)
    if not 1 <= len(offer_ids) <= MAX_CART_OFFERS or len(set(offer_ids)) != len(offer_ids):
        raise CheckoutError(f"A cart holds from 1 to {MAX_CART_OFFERS} different offers.")
    offers = _require_offers(session, offer_ids)
    if len({offer.currency for offer in offers.values()}) > 1:
        raise CheckoutError("The offers of a cart must share one currency.")
    if any(offer.billing_type == "pay_what_you_want" for offer in offers.values()):
        raise CheckoutError("A pay-what-you-want offer is sold on its own, not in a cart.")
    cart = Cart(id=f"cart_{uuid.uuid4().hex[:16]}", name=name, offer_ids=offer_ids,
                post_purchase=asdict(post_purchase))
    session.add(cart)
    return cart



def store_settings(session: Session) -> StoreSettings:
    """The store's checkout settings; Postsale's defaults until the seller sets them."""
    return session.get(StoreSettings, "store") or StoreSettings()


def update_store_settings(session: Session, *, recovery_delay_minutes: int) -> StoreSettings:
    if not 1 <= recovery_delay_minutes <= MAX_RECOVERY_DELAY_MINUTES:
        raise CheckoutError(f"The recovery delay may be from 1 to {MAX_RECOVERY_DELAY_MINUTES} minutes (a week).")
    settings = store_settings(session)
    settings.recovery_delay_minutes = recovery_delay_minutes
    settings.updated_at = utcnow()
    session.add(settings)
    return settings
