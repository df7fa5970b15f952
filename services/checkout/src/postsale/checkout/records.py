"""Domain values from checkout's rows: what the rules in `domain/` reason about."""

from __future__ import annotations

from postsale.checkout.adapters.tables import Coupon, Offer
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.coupons import CouponRules
from postsale.checkout.domain.funnel import FunnelStep
from postsale.checkout.domain.post_purchase import PostPurchase
from postsale.runtime.clock import as_utc


def offer_terms(offer: Offer) -> BillingTerms:
    return BillingTerms(type=offer.billing_type, amount=offer.price_amount, currency=offer.currency,  # type: ignore[arg-type]
                        interval=offer.interval, interval_count=offer.interval_count,  # type: ignore[arg-type]
                        trial_days=offer.trial_days, instalments=offer.instalments, minimum=offer.minimum_amount)


def offer_funnel(offer: Offer) -> list[FunnelStep]:
    return [FunnelStep(**step) for step in offer.upsells]


def post_purchase_of(settings: dict) -> PostPurchase:
    return PostPurchase(**settings)


def coupon_rules(coupon: Coupon) -> CouponRules:
    return CouponRules(code=coupon.code, kind=coupon.kind, percent_off=coupon.percent_off,  # type: ignore[arg-type]
                       amount_off=coupon.amount_off, currency=coupon.currency, duration=coupon.duration,  # type: ignore[arg-type]
                       duration_periods=coupon.duration_periods,
                       expires_at=as_utc(coupon.expires_at) if coupon.expires_at else None,
                       max_redemptions=coupon.max_redemptions, offer_ids=tuple(coupon.offer_ids))
