"""What a checkout charges now: each offer's price, the coupon's discount, the total. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.coupons import CouponRules, applies_to


@dataclass(frozen=True)
class Line:
    offer_id: str
    name: str
    terms: BillingTerms
    price: int  # before the coupon, what is due now
    discount: int = 0
    is_bump: bool = False

    @property
    def due_now(self) -> int:
        return self.price - self.discount


@dataclass(frozen=True)
class Quote:
    lines: tuple[Line, ...]
    currency: str
    coupon: CouponRules | None = None

    @property
    def total(self) -> int:
        return sum(line.due_now for line in self.lines)

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def saves_method(self) -> bool:
        """A payment method must be saved even when nothing is due (a free trial)."""
        return any(line.terms.recurring for line in self.lines)

    @property
    def needs_payment(self) -> bool:
        return self.total > 0 or self.saves_method


def make_quote(items: list[tuple[str, str, BillingTerms, bool]], *, coupon: CouponRules | None,
               chosen_amount: int | None = None) -> Quote:
    """`items` are (offer id, name, terms, is the order bump); the first is the primary offer,
    the only one whose pay-what-you-want amount the buyer chooses."""
    lines = []
    for index, (offer_id, name, terms, is_bump) in enumerate(items):
        price = terms.due_now(chosen_amount if index == 0 else None)
        discount = coupon.discount(price) if coupon and applies_to(coupon, offer_id) else 0
        lines.append(Line(offer_id, name, terms, price, discount, is_bump))
    return Quote(tuple(lines), items[0][2].currency, coupon)
