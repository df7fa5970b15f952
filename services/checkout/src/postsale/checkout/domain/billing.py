"""Price models: what an offer costs, how often, and what the buyer pays at checkout.

Pure rules, no I/O: the admin API validates with `terms_problem`, checkout asks `due_now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from postsale.checkout.domain.money import amount_problem, currency_problem, format_money, max_amount

BillingType = Literal["one_time", "free", "subscription", "payment_plan", "pay_what_you_want"]
Interval = Literal["day", "week", "month", "year"]
RECURRING: frozenset[str] = frozenset({"subscription", "payment_plan"})
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 24, "year": 5}
MAX_TRIAL_DAYS = 365
MAX_INSTALMENTS = 60


@dataclass(frozen=True)
class BillingTerms:
    """How an offer is paid. `amount` is the price, each renewal's or each instalment's amount;
    for pay what you want it is the suggested amount, and `minimum` the least accepted."""

    type: BillingType
    amount: int
    currency: str
    interval: Interval | None = None
    interval_count: int = 1
    trial_days: int = 0
    instalments: int | None = None
    minimum: int | None = None

    @property
    def recurring(self) -> bool:
        return self.type in RECURRING

    def due_now(self, chosen_amount: int | None = None) -> int:
        """What the first payment charges, before coupons: nothing during a free trial."""
        if self.type == "free" or (self.type == "subscription" and self.trial_days):
            return 0
        if self.type == "pay_what_you_want" and chosen_amount is not None:
            return chosen_amount
        return self.amount

    def period_end(self, start: datetime) -> datetime:
        """The end of the billing period that starts at `start`."""
        assert self.interval is not None, "only recurring terms have periods"
        if self.interval == "day":
            return start + timedelta(days=self.interval_count)
        if self.interval == "week":
            return start + timedelta(weeks=self.interval_count)
        return add_months(start, self.interval_count * (12 if self.interval == "year" else 1))

    def trial_end(self, start: datetime) -> datetime | None:
        return start + timedelta(days=self.trial_days) if self.type == "subscription" and self.trial_days else None

    def describe(self) -> str:
        """How a buyer reads the price: `49.00 EUR every 2 months after a 14-day free trial`."""
        price = format_money(self.amount, self.currency)
        every = f" {cadence(self.interval, self.interval_count)}" if self.interval else ""
        if self.type == "free":
            return "Free"
        if self.type == "subscription":
            trial = f" after a {self.trial_days}-day free trial" if self.trial_days else ""
            return f"{price}{every}{trial}"
        if self.type == "payment_plan":
            return f"{self.instalments} payments of {price}{every}"
        if self.type == "pay_what_you_want":
            return f"Pay what you want (at least {format_money(self.minimum or 0, self.currency)})"
        return price


def cadence(interval: str, count: int) -> str:
    """How often a price is charged, as a buyer reads it: `a month`, `every 2 weeks`."""
    return f"a {interval}" if count == 1 else f"every {count} {interval}s"


def terms_problem(terms: BillingTerms) -> str | None:
    """What is wrong with the terms a seller entered, in words for the seller; None when sound."""
    problem = currency_problem(terms.currency)
    if problem:
        return problem
    if terms.type == "free":
        return None if terms.amount == 0 else "A free offer has no price: leave the amount at 0."
    problem = amount_problem(terms.amount, terms.currency, what="The price")
    if problem:
        return problem
    if terms.recurring:
        if terms.interval is None:
            return f"A {terms.type.replace('_', ' ')} needs an interval: day, week, month or year."
        if not 1 <= terms.interval_count <= MAX_INTERVAL_COUNT[terms.interval]:
            return (f"The interval count must be between 1 and {MAX_INTERVAL_COUNT[terms.interval]} "
                    f"for {terms.interval}s.")
    elif terms.interval is not None or terms.trial_days:
        return "Only a subscription or a payment plan has an interval or a trial."
    if not 0 <= terms.trial_days <= MAX_TRIAL_DAYS:
        return f"A trial may last from 0 to {MAX_TRIAL_DAYS} days."
    if terms.trial_days and terms.type != "subscription":
        return "Only a subscription can have a free trial."
    if terms.type == "payment_plan":
        if terms.instalments is None or not 2 <= terms.instalments <= MAX_INSTALMENTS:
            return f"A payment plan needs from 2 to {MAX_INSTALMENTS} instalments."
    elif terms.instalments is not None:
        return "Only a payment plan has instalments."
    if terms.type == "pay_what_you_want":
        if terms.minimum is None:
            return "Pay what you want needs a minimum amount (0 lets buyers pay nothing)."
        problem = amount_problem(terms.minimum, terms.currency, what="The minimum", allow_zero=True)
        if problem:
            return problem
        if terms.minimum > terms.amount:
            return "The suggested amount must not be below the minimum."
    elif terms.minimum is not None:
        return "Only pay what you want has a minimum."
    return None


def chosen_amount_problem(terms: BillingTerms, chosen: int | None) -> str | None:
    """For pay what you want: whether the buyer's amount is acceptable."""
    if chosen is None:
        return "Enter the amount you want to pay."
    if chosen < (terms.minimum or 0):
        return f"The least you can pay is {format_money(terms.minimum or 0, terms.currency)}."
    if chosen > max_amount(terms.currency):
        return f"The most you can pay is {format_money(max_amount(terms.currency), terms.currency)}."
    return None


def add_months(start: datetime, months: int) -> datetime:
    """The same day `months` later, or the month's last day when it is shorter (Jan 31 -> Feb 28)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    next_month_first = datetime(year + month // 12, month % 12 + 1, 1)
    last_day = (next_month_first - timedelta(days=1)).day
    return start.replace(year=year, month=month, day=min(start.day, last_day))
