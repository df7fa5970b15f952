"""The seller's dashboard: how the store is doing, from checkout's own tables only.

Every figure is counted over whole UTC days: "today", and a window of the last 30 days that ends
with today (the chart's 30 bars). Money is kept per currency, never converted. `now` is passed in
(the injectable clock), so a test can set the day.

Upsell decisions: an accepted upsell is its payment (step `upsell:<offer>`); a declined one is
recorded only as the `UpsellDeclined` event checkout queued in its outbox, which keeps sent rows,
so the take rate reads both from checkout's database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import or_
from sqlmodel import Session, func, select

from postsale.checkout import billing
from postsale.checkout.adapters.tables import Payment, Purchase, Refund, Subscription
from postsale.contracts import UpsellDeclined
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging.outbox import OutboxMessage

WINDOW_DAYS = 30
# How many months one billing interval lasts, to bring every subscription's price to a month.
MONTHS_IN = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}
# In the MRR: past due ones too, still being retried; trialing ones pay nothing yet, paused ones
# nothing now, and those with a cancellation scheduled renew no more.
PAYING = ("active", "past_due")


@dataclass(frozen=True)
class Money:
    """Amounts per currency (minor units), and how many rows made them."""

    count: int = 0
    amounts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Day:
    day: date
    sales: int
    amounts: dict[str, int]


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int

    @property
    def percent(self) -> float | None:
        return 100 * self.part / self.whole if self.whole else None


@dataclass(frozen=True)
class Dashboard:
    today: date
    since: date  # the window's first day
    sales_today: Money
    sales: Money  # over the window
    days: list[Day]
    renewals: Money  # renewals and instalments collected over the window
    refunds: Money
    active_subscriptions: int  # trialing, active or past due
    trialing: int
    payment_plans: int  # payment plans still being paid
    mrr: dict[str, int]  # active and past due subscriptions, without a cancellation scheduled
    churn: Rate  # of those paying at the window's start, cancelled since / all of them
    upsells: Rate  # accepted / accepted + declined, over the window
    past_due: Money  # subscriptions and payment plans in dunning, and what their next charge asks


def _grouped(rows) -> Money:
    amounts: dict[str, int] = {}
    count = 0
    for currency, n, total in rows:
        count += n
        amounts[currency] = amounts.get(currency, 0) + int(total or 0)
    return Money(count, amounts)


def monthly_amount(amount: int, interval: str, interval_count: int) -> int:
    """A subscription's price for one month, in minor units (12 EUR a year: 1.00 EUR a month)."""
    return round(amount / (MONTHS_IN[interval] * max(interval_count, 1)))


def dashboard(session: Session, now: datetime) -> Dashboard:
    today = now.astimezone(timezone.utc).date()
    since = today - timedelta(days=WINDOW_DAYS - 1)
    start = datetime.combine(since, time(), tzinfo=timezone.utc)
    today_start = datetime.combine(today, time(), tzinfo=timezone.utc)
    end = today_start + timedelta(days=1)

    # Sales: every purchase (upsells and order bumps are sales of their own), but not the offers a
    # seller gave a customer added by hand (provider `none`). Bucketed in Python: the days are UTC
    # days whatever the database's time zone.
    per_day: dict[date, list] = defaultdict(lambda: [0, defaultdict(int)])
    for completed_at, currency, amount in session.exec(select(Purchase.completed_at, Purchase.currency, Purchase.amount)
                                                       .where(Purchase.completed_at >= start, Purchase.completed_at < end,
                                                              Purchase.provider != "none")):
        bucket = per_day[as_utc(completed_at).date()]
        bucket[0] += 1
        bucket[1][currency] += amount
    days = [Day(d, per_day[d][0], dict(per_day[d][1])) if d in per_day else Day(d, 0, {})
            for d in (since + timedelta(days=i) for i in range(WINDOW_DAYS))]
    totals: dict[str, int] = defaultdict(int)
    for day in days:
        for currency, amount in day.amounts.items():
            totals[currency] += amount

    renewals = _grouped(session.exec(
        select(Payment.currency, func.count(), func.sum(Payment.amount))
        .where(Payment.subscription_id.is_not(None), Payment.paid_at >= start, Payment.paid_at < end)  # type: ignore[union-attr]
        .group_by(Payment.currency)))
    refunds = _grouped(session.exec(
        select(Refund.currency, func.count(), func.sum(Refund.amount))
        .where(Refund.refunded_at >= start, Refund.refunded_at < end).group_by(Refund.currency)))

    by_state: dict[tuple[str, str], int] = {
        (kind, status): n for kind, status, n in session.exec(
            select(Subscription.kind, Subscription.status, func.count()).group_by(Subscription.kind, Subscription.status))}
    live = ("trialing", "active", "past_due")

    mrr: dict[str, int] = defaultdict(int)
    for subscription in session.exec(select(Subscription).where(Subscription.kind == "subscription",
                                                                 Subscription.status.in_(PAYING),  # type: ignore[attr-defined]
                                                                 Subscription.cancel_at.is_(None))):  # type: ignore[union-attr]
        # What the next renewal charges (the coupon while it lasts), as billing charges it; one
        # whose cancellation is scheduled has no next renewal to count.
        amount = billing.period_amount(session, subscription)
        mrr[subscription.currency] += monthly_amount(amount, subscription.interval, subscription.interval_count)

    # Churn: of the subscriptions paying when the window began (started before it, past any free
    # trial, not ended), those cancelled since. Subscriptions started within the window are
    # neither counted nor churned, so the rate never passes 100%.
    paying_at_start = (Subscription.kind == "subscription", Subscription.created_at < start,
                       or_(Subscription.ended_at.is_(None), Subscription.ended_at >= start),  # type: ignore[union-attr,operator]
                       or_(Subscription.trial_end.is_(None), Subscription.trial_end <= start))  # type: ignore[union-attr,operator]
    active_at_start = session.exec(select(func.count()).select_from(Subscription).where(*paying_at_start)).one()
    cancelled = session.exec(select(func.count()).select_from(Subscription).where(
        *paying_at_start, Subscription.status == "cancelled", Subscription.ended_at < end)).one()  # type: ignore[operator]

    accepted = session.exec(select(func.count()).select_from(Payment).where(
        Payment.step.startswith("upsell:"), Payment.paid_at >= start, Payment.paid_at < end)).one()  # type: ignore[attr-defined]
    declined = session.exec(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.topic == UpsellDeclined.topic,
        OutboxMessage.headers.contains(f'"ce_type": "{UpsellDeclined.event_type}"', autoescape=True),  # type: ignore[attr-defined]
        OutboxMessage.created_at >= start, OutboxMessage.created_at < end)).one()

    past_due = _grouped((s.currency, 1, billing.period_amount(session, s)) for s in session.exec(
        select(Subscription).where(Subscription.status == "past_due")))

    return Dashboard(
        today=today, since=since, sales_today=Money(days[-1].sales, days[-1].amounts),
        sales=Money(sum(d.sales for d in days), dict(totals)), days=days, renewals=renewals, refunds=refunds,
        active_subscriptions=sum(by_state.get(("subscription", s), 0) for s in live),
        trialing=by_state.get(("subscription", "trialing"), 0),
        payment_plans=sum(by_state.get(("payment_plan", s), 0) for s in live),
        mrr=dict(mrr), churn=Rate(cancelled, active_at_start), upsells=Rate(accepted, accepted + declined),
        past_due=past_due,
    )
