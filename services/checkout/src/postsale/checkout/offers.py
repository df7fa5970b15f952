"""The seller's side of checkout: offers and their price models, coupons, carts.

Each use case runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict

from sqlmodel import Session, func, select

from postsale.checkout.adapters.tables import CatalogProduct, Cart, Coupon, Offer, StoreSettings, Subscription
from postsale.checkout.domain.billing import BillingTerms, terms_problem
from postsale.checkout.domain.billing_cycle import SelfService
from postsale.checkout.domain.coupons import CouponRules, rules_problem
from postsale.checkout.domain.funnel import MAX_STEPS, FunnelStep
from postsale.checkout.domain.post_purchase import PostPurchase, settings_problem
from postsale.checkout.errors import CheckoutError
from postsale.checkout.records import offer_funnel, offer_terms
from postsale.contracts import AccessPolicy
from postsale.runtime.clock import utcnow

MAX_CART_OFFERS = 20
MAX_NAME_LENGTH = 200
ENDED = ("cancelled", "completed")  # a subscription or payment plan in these is billed no more
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


def _check_add_on(currency: str, add_on: Offer, role: str) -> None:
    """An order bump or an upsell is a one-time offer in the primary offer's currency."""
    if add_on.billing_type != "one_time":
        raise CheckoutError(f"The {role} {add_on.id} must be a one-time offer.")
    if add_on.currency != currency:
        raise CheckoutError(f"The {role} {add_on.id} must be priced in {currency}, as the offer is.")


def _check_offer(session: Session, offer_id: str | None, *, name: str, terms: BillingTerms, product_ids: list[str],
                 order_bump_offer_id: str | None, upsells: list[FunnelStep], post_purchase: PostPurchase) -> None:
    """The rules every offer keeps, new or changed (`offer_id` None for a new one)."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise CheckoutError(f"An offer needs a name of 1 to {MAX_NAME_LENGTH} characters.")
    problem = terms_problem(terms) or settings_problem(post_purchase)
    if problem:
        raise CheckoutError(problem)
    if not product_ids:
        raise CheckoutError("Choose at least one product the offer sells.")
    known = {product.id: product for product in session.exec(
        select(CatalogProduct).where(CatalogProduct.id.in_(product_ids))).all()}  # type: ignore[attr-defined]
    unknown = [p for p in product_ids if p not in known]
    if unknown:
        raise CheckoutError(f"unknown product id(s): {', '.join(unknown)}")
    # An archived product stays in the offers that had it; no offer takes it anew.
    already = set(session.get(Offer, offer_id).product_ids) if offer_id else set()
    archived = [known[p].name for p in product_ids if known[p].archived_at is not None and p not in already]
    if archived:
        raise CheckoutError(f"{', '.join(archived)} is archived: bring it back in Products before offering it.")
    if len(upsells) > MAX_STEPS:
        raise CheckoutError(f"A funnel has at most {MAX_STEPS} upsell steps.")
    add_ons = [order_bump_offer_id] if order_bump_offer_id else []
    add_ons += [o for step in upsells for o in (step.offer_id, step.downsell_offer_id) if o]
    if (upsells or order_bump_offer_id) and terms.type == "free":
        raise CheckoutError("A free offer takes no payment, so it can have no order bump or upsells.")
    if offer_id is not None and offer_id in add_ons:
        raise CheckoutError("An offer cannot be its own order bump, upsell or downsell.")
    for add_on_id, add_on in _require_offers(session, add_ons).items():
        _check_add_on(terms.currency, add_on, "order bump" if add_on_id == order_bump_offer_id else "upsell")


def _apply(offer: Offer, *, name: str, terms: BillingTerms, product_ids: list[str], order_bump_offer_id: str | None,
           upsells: list[FunnelStep], post_purchase: PostPurchase, access_policy: AccessPolicy,
           self_service: SelfService, send_confirmation_email: bool, send_recovery_email: bool) -> None:
    offer.name, offer.billing_type, offer.price_amount, offer.currency = name, terms.type, terms.amount, terms.currency
    offer.interval, offer.interval_count, offer.trial_days = terms.interval, terms.interval_count, terms.trial_days
    offer.instalments, offer.minimum_amount = terms.instalments, terms.minimum
    offer.product_ids = list(dict.fromkeys(product_ids))
    offer.order_bump_offer_id = order_bump_offer_id
    offer.upsells = [asdict(step) for step in upsells]
    offer.post_purchase = asdict(post_purchase)
    offer.access_policy = access_policy.model_dump(exclude_defaults=True)
    offer.self_service = asdict(self_service)
    offer.send_confirmation_email, offer.send_recovery_email = send_confirmation_email, send_recovery_email


def create_offer(session: Session, *, name: str, terms: BillingTerms, product_ids: list[str],
                 order_bump_offer_id: str | None = None, upsells: list[FunnelStep] = (),  # type: ignore[assignment]
                 post_purchase: PostPurchase = PostPurchase(), access_policy: AccessPolicy = AccessPolicy(),
                 self_service: SelfService = SelfService(), send_confirmation_email: bool = True,
                 send_recovery_email: bool = True) -> Offer:
    upsells = list(upsells)
    _check_offer(session, None, name=name, terms=terms, product_ids=product_ids,
                 order_bump_offer_id=order_bump_offer_id, upsells=upsells, post_purchase=post_purchase)
    offer = Offer(id=f"offer_{uuid.uuid4().hex[:16]}", name=name, price_amount=terms.amount, currency=terms.currency,
                  product_ids=[])
    _apply(offer, name=name, terms=terms, product_ids=product_ids, order_bump_offer_id=order_bump_offer_id,
           upsells=upsells, post_purchase=post_purchase, access_policy=access_policy, self_service=self_service,
           send_confirmation_email=send_confirmation_email, send_recovery_email=send_recovery_email)
    session.add(offer)
    return offer


def update_offer(session: Session, offer: Offer, *, name: str, terms: BillingTerms, product_ids: list[str],
                 order_bump_offer_id: str | None = None, upsells: list[FunnelStep] = (),  # type: ignore[assignment]
                 post_purchase: PostPurchase = PostPurchase(), access_policy: AccessPolicy = AccessPolicy(),
                 self_service: SelfService = SelfService(), send_confirmation_email: bool = True,
                 send_recovery_email: bool = True) -> Offer:
    """Changes an offer with the rules of a new one, plus what keeps its buyers' deals and the offers
    around it sound: a new price counts for new buyers (a subscription keeps the amount it was sold
    at), but the billing of live subscriptions reads the offer's interval and instalments, so those
    stay while any lasts; and an offer others use as an order bump, upsell or in a cart keeps what
    makes it fit there. Changes nothing when it raises."""
    upsells = list(upsells)
    _check_offer(session, offer.id, name=name, terms=terms, product_ids=product_ids,
                 order_bump_offer_id=order_bump_offer_id, upsells=upsells, post_purchase=post_purchase)
    current = offer_terms(offer)
    if (terms.type, terms.interval, terms.interval_count, terms.instalments) != (
            current.type, current.interval, current.interval_count, current.instalments):
        live = session.exec(select(func.count()).select_from(Subscription).where(
            Subscription.offer_id == offer.id, Subscription.status.not_in(ENDED))).one()  # type: ignore[attr-defined]
        if live:
            raise CheckoutError(
                f"{live} subscription(s) or payment plan(s) of this offer are billed on its terms: its price model, "
                f"interval and instalments stay as they are while any lasts (a new price is fine: it counts for "
                f"new buyers). Create a new offer for other terms.")
    if terms.type != "one_time" or terms.currency != offer.currency:
        users = [o.id for o in session.exec(select(Offer).where(Offer.id != offer.id)).all()
                 if offer.id in _add_ons_of(o)]
        if users:
            raise CheckoutError(f"This offer is the order bump or an upsell of {', '.join(users[:10])}: it must stay "
                                f"a one-time offer in {offer.currency}.")
    if terms.currency != offer.currency or terms.type == "pay_what_you_want":
        carts = [c.id for c in session.exec(select(Cart)).all() if offer.id in c.offer_ids]
        if carts:
            raise CheckoutError(f"This offer is sold in the cart(s) {', '.join(carts[:10])}: it keeps its currency "
                                f"and cannot become pay what you want.")
    _apply(offer, name=name, terms=terms, product_ids=product_ids, order_bump_offer_id=order_bump_offer_id,
           upsells=upsells, post_purchase=post_purchase, access_policy=access_policy, self_service=self_service,
           send_confirmation_email=send_confirmation_email, send_recovery_email=send_recovery_email)
    session.add(offer)
    return offer


def _add_ons_of(offer: Offer) -> set[str]:
    steps = offer_funnel(offer)
    return ({offer.order_bump_offer_id} if offer.order_bump_offer_id else set()) | {
        o for step in steps for o in (step.offer_id, step.downsell_offer_id) if o}


def offer_page(session: Session, page: int, per_page: int = 50) -> tuple[list[Offer], bool]:
    """One page of the offers, newest first, and whether another follows."""
    rows = session.exec(select(Offer).order_by(Offer.created_at.desc(), Offer.id)  # type: ignore[attr-defined]
                        .offset((page - 1) * per_page).limit(per_page + 1)).all()
    return list(rows[:per_page]), len(rows) > per_page


def coupons_of_offer(session: Session, offer_id: str, limit: int = 200) -> list[Coupon]:
    """The coupons a buyer of the offer may use: those naming it, and those for every offer."""
    rows = session.exec(select(Coupon).order_by(Coupon.created_at.desc()).limit(2000)).all()  # type: ignore[attr-defined]
    return [c for c in rows if not c.offer_ids or offer_id in c.offer_ids][:limit]


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
