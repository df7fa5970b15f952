"""Coupons: which codes apply to which offer, and what they take off. Pure rules, no I/O.

Redemptions are counted by the database (a conditional update), not here: two buyers racing
for the last redemption cannot both get it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from postsale.checkout.domain.money import amount_problem, currency_problem

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,39}$")
MAX_PERIODS = 120
MAX_OFFERS = 100


@dataclass(frozen=True)
class CouponRules:
    code: str
    kind: Literal["percent", "fixed"]
    percent_off: int | None = None  # 1..100
    amount_off: int | None = None  # minor units of `currency`
    currency: str | None = None
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_periods: int | None = None  # for `repeating`: how many billing periods
    expires_at: datetime | None = None
    max_redemptions: int | None = None
    offer_ids: tuple[str, ...] = ()  # empty: every offer

    def discount(self, amount: int) -> int:
        """What the coupon takes off `amount` (never more than the amount)."""
        if self.kind == "percent":
            return min(amount, amount * (self.percent_off or 0) // 100)
        return min(amount, self.amount_off or 0)

    def periods(self) -> int | None:
        """For how many billing periods a subscription keeps the discount: None for ever."""
        return {"once": 1, "repeating": self.duration_periods, "forever": None}[self.duration]


def normalize_code(code: str) -> str:
    return code.strip().upper()


def rules_problem(rules: CouponRules) -> str | None:
    """What is wrong with a coupon a seller entered; None when sound."""
    if not CODE_PATTERN.match(rules.code):
        return "A code is 2 to 40 letters, digits, dashes or underscores, starting with a letter or digit."
    if rules.kind == "percent":
        if rules.percent_off is None or not 1 <= rules.percent_off <= 100:
            return "A percent coupon takes off from 1 to 100 percent."
        if rules.amount_off is not None or rules.currency is not None:
            return "A percent coupon has no amount or currency."
    else:
        if rules.amount_off is None or rules.currency is None:
            return "A fixed coupon needs an amount and its currency."
        problem = currency_problem(rules.currency) or amount_problem(rules.amount_off, rules.currency,
                                                                      what="The amount off")
        if problem:
            return problem
        if rules.percent_off is not None:
            return "A fixed coupon has no percent."
    if rules.duration == "repeating":
        if rules.duration_periods is None or not 1 <= rules.duration_periods <= MAX_PERIODS:
            return f"A repeating coupon lasts from 1 to {MAX_PERIODS} billing periods."
    elif rules.duration_periods is not None:
        return "Only a repeating coupon has a number of periods."
    if rules.max_redemptions is not None and rules.max_redemptions < 1:
        return "The maximum number of redemptions must be at least 1."
    if len(rules.offer_ids) > MAX_OFFERS:
        return f"A coupon may be restricted to at most {MAX_OFFERS} offers."
    return None


def redeem_problem(rules: CouponRules, *, offer_ids: list[str], currency: str, now: datetime,
                   redemptions: int) -> str | None:
    """Why a buyer cannot use this coupon on this checkout, in words for the buyer; None when they can."""
    if rules.expires_at is not None and now >= rules.expires_at:
        return f"The code {rules.code} has expired."
    if rules.max_redemptions is not None and redemptions >= rules.max_redemptions:
        return f"The code {rules.code} has been used up."
    if rules.offer_ids and not set(offer_ids) & set(rules.offer_ids):
        return f"The code {rules.code} does not apply to this purchase."
    if rules.kind == "fixed" and rules.currency != currency:
        return f"The code {rules.code} does not apply to prices in {currency}."
    return None


def applies_to(rules: CouponRules, offer_id: str) -> bool:
    return not rules.offer_ids or offer_id in rules.offer_ids
