"""The back office's dashboard as a seller reads it: sales today and over 30 days per currency,
refunds, subscriptions and their monthly recurring revenue, churn, the upsell take rate and the
payments in dunning, with a chart of daily sales and the same figures as a table. "Today" is the
injectable clock's."""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.checkout import dashboard as figures
from postsale.checkout.adapters.tables import CheckoutSession, Offer, Payment, Purchase, Refund, Subscription
from postsale.contracts import UpsellDeclined
from postsale.runtime import clock
from postsale.runtime.messaging import publish_later
from postsale.runtime.messaging.outbox import OutboxMessage
from test_checkout_backoffice_offers import Store

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 15, 10, 30, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.setattr(clock, "utcnow", lambda: NOW)
    store = Store(tmp_path, monkeypatch)
    with store.session() as session:
        for currency in ("EUR", "USD"):
            session.add(Offer(id=f"offer_{currency.lower()}", name=f"Course {currency}", price_amount=4900,
                              currency=currency, product_ids=["prod_course"]))
        session.commit()
    return store


def sale(session: Session, amount: int, currency: str = "EUR", *, at: datetime, provider: str = "sandbox") -> Purchase:
    checkout = CheckoutSession(id=f"cs_{uuid.uuid4().hex[:10]}", offer_id=f"offer_{currency.lower()}",
                               email="ann@example.com", status="paid", created_at=at)
    purchase = Purchase(id=f"pur_{uuid.uuid4().hex[:10]}", checkout_session_id=checkout.id, customer_id="cus_1",
                        email="ann@example.com", offer_id=checkout.offer_id, amount=amount, currency=currency,
                        provider=provider, provider_payment_id=f"pi_{uuid.uuid4().hex[:8]}", completed_at=at)
    session.add(checkout)
    session.flush()
    session.add(purchase)
    session.flush()
    return purchase


def subscription(session: Session, amount: int, *, status: str = "active", interval: str = "month", count: int = 1,
                 currency: str = "EUR", kind: str = "subscription", started: datetime = NOW - timedelta(days=60),
                 ended: datetime | None = None) -> Subscription:
    purchase = sale(session, 0 if status == "trialing" else amount, currency, at=started)
    row = Subscription(id=f"sub_{uuid.uuid4().hex[:10]}", purchase_id=purchase.id, customer_id="cus_1",
                       offer_id=purchase.offer_id, kind=kind, status=status, amount=amount, currency=currency,
                       interval=interval, interval_count=count, provider="sandbox", current_period_start=started,
                       current_period_end=started + timedelta(days=30), ended_at=ended, created_at=started)
    session.add(row)
    session.flush()
    return row


def declined(session: Session, at: datetime) -> None:
    publish_later(session, UpsellDeclined(purchase_id="pur_1", customer_id="cus_1", email="ann@example.com",
                                          offer_id="offer_usd", offer_name="Call", declined_at=at), source="/tests")
    session.flush()
    row = session.exec(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()  # type: ignore[union-attr]
    row.created_at = at
    session.add(row)


def page_text(answer) -> str:
    return re.sub(r"\s+", " ", html.unescape(answer.text))


def metric(text: str, name: str) -> str:
    return re.search(rf'data-metric="{name}".*?</section>', text).group(0)


def test_an_empty_store_shows_zeros_and_no_rates(store):
    page = store.browser("support").get("/admin/dashboard")  # any staff member
    assert page.status_code == 200
    text = page_text(page)
    assert "Today is 15 Mar 2026 (UTC)" in text and "from 14 Feb 2026 to today" in text
    assert "Revenue: none" in metric(text, "sales-today") and "none yet" in metric(text, "churn")
    assert "none yet" in metric(text, "upsell-take-rate")
    assert text.count('<rect class="bar"') == 30 and text.count("data-day=") == 30


def test_the_dashboard_counts_sales_refunds_subscriptions_churn_upsells_and_dunning(store):
    with store.session() as session:
        first = sale(session, 4900, at=NOW - timedelta(hours=2))
        sale(session, 1000, "USD", at=NOW.replace(hour=0, minute=0))
        sale(session, 0, at=NOW, provider="none")  # a grant by hand: no sale
        sale(session, 2000, at=NOW - timedelta(days=10))
        sale(session, 9900, at=NOW - timedelta(days=30))  # a day before the window
        session.add(Refund(id="re_1", purchase_id=first.id, provider="sandbox", provider_refund_id="rf_1", amount=500,
                           currency="EUR", actor="seller", refunded_at=NOW - timedelta(days=3)))
        session.add(Refund(id="re_2", purchase_id=first.id, provider="sandbox", provider_refund_id="rf_2", amount=700,
                           currency="EUR", actor="seller", refunded_at=NOW - timedelta(days=45)))

        subscription(session, 1000)  # 10.00 EUR a month
        subscription(session, 12000, interval="year")  # 10.00 EUR a month
        subscription(session, 3000, status="trialing", started=NOW - timedelta(days=1))  # pays nothing yet
        late = subscription(session, 1200, status="past_due", interval="week", currency="USD")  # 52.00 USD a month
        subscription(session, 5000, status="cancelled", ended=NOW - timedelta(days=5))
        subscription(session, 5000, status="cancelled", ended=NOW - timedelta(days=50))  # churned long ago
        subscription(session, 2500, kind="payment_plan")
        session.add(Payment(id="pay_renewal", checkout_session_id=session.get(Purchase, late.purchase_id).checkout_session_id,
                            step=f"period:{late.id}:1", subscription_id=late.id,
            amount=1200, currency="USD", provider="sandbox", provider_payment_id="pi_r", paid_at=NOW - timedelta(days=6)))

        upsold = sale(session, 1500, at=NOW - timedelta(days=2))
        session.add(Payment(id="pay_upsell", checkout_session_id=upsold.checkout_session_id, step="upsell:offer_eur",
                            amount=1500, currency="EUR", provider="sandbox", provider_payment_id="pi_u",
                            paid_at=NOW - timedelta(days=2)))
        declined(session, NOW - timedelta(days=1))
        declined(session, NOW - timedelta(days=40))  # outside the window
        session.commit()

    text = page_text(store.browser("owner").get("/admin/dashboard"))
    assert re.search(r'Sales today</h3> <p class="figure">2</p> <p>Revenue: 49.00 EUR, 10.00 USD', text)
    # 49 + 20 + 15 (the upsell) + 0 (the trial's start) EUR, and the USD one
    assert re.search(r'Sales, last 30 days</h3> <p class="figure">5</p> <p>Revenue: 84.00 EUR, 10.00 USD', text)
    assert re.search(r'Refunds, last 30 days</h3> <p class="figure">1</p> <p>Refunded: 5.00 EUR', text)
    assert re.search(r'Renewals and instalments, last 30 days</h3> <p class="figure">1</p> <p>Collected: 12.00 USD', text)
    assert re.search(r'Active subscriptions</h3> <p class="figure">4</p> <p>1 in a free trial; 1 payment plan', text)
    assert '<p class="figure">20.00 EUR, 52.00 USD</p>' in metric(text, "mrr")
    assert "Past due subscriptions, still being retried, are included" in metric(text, "mrr")
    # Paying on 14 Feb: the two paying, the past due and the one cancelled since (5 days ago) = 4; 1 cancelled.
    assert '<p class="figure">25.0%</p> <p>1 cancelled of 4 paying on 14 Feb.</p>' in metric(text, "churn")
    assert "Those started since are left out" in metric(text, "churn")
    assert '<p class="figure">50.0%</p> <p>1 accepted of 2 upsells' in metric(text, "upsell-take-rate")
    assert '<p class="figure">1</p> <p>Past due, being retried: 12.00 USD' in metric(text, "dunning")

    # The chart and its table say the same: two sales today, one ten days ago.
    assert '<title>15 Mar: 2 sales (49.00 EUR, 10.00 USD)</title>' in text
    assert '<title>05 Mar: 1 sale (20.00 EUR)</title>' in text
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in text
    assert re.search(r'data-day="2026-03-15"><th scope="row">Sun 15 Mar 2026</th> <td>2</td>', text)
    assert re.search(r'data-day="2026-02-14"><th scope="row">Sat 14 Feb 2026</th> <td>0</td>', text)


def test_churn_counts_only_the_subscriptions_paying_when_the_window_began(store):
    with store.session() as session:
        subscription(session, 1000)  # paying since before the window, still paying
        subscription(session, 1000, status="cancelled", ended=NOW - timedelta(days=3))  # churned
        for days in (20, 10, 5):  # started and cancelled within the window: neither counted nor churned
            subscription(session, 1000, status="cancelled", started=NOW - timedelta(days=days),
                         ended=NOW - timedelta(days=days - 2))
        trial = subscription(session, 3000, status="cancelled", started=NOW - timedelta(days=40),
                             ended=NOW - timedelta(days=25))  # in its free trial on 14 Feb, never paid
        trial.trial_end = NOW - timedelta(days=26)
        session.add(trial)
        session.commit()
    churn = figures.dashboard(store.session(), NOW).churn
    assert (churn.part, churn.whole) == (1, 2) and churn.percent == 50.0


def test_the_mrr_leaves_out_subscriptions_ending_with_a_cancellation_scheduled(store):
    with store.session() as session:
        subscription(session, 1000)
        ending = subscription(session, 5000)
        ending.cancel_at = NOW + timedelta(days=10)
        session.add(ending)
        subscription(session, 2000, status="paused")
        subscription(session, 700, status="past_due")  # still being retried: counted
        session.commit()
    assert figures.dashboard(store.session(), NOW).mrr == {"EUR": 1700}


def test_a_subscription_price_is_brought_to_a_month():
    assert figures.monthly_amount(12000, "year", 1) == 1000
    assert figures.monthly_amount(1200, "week", 1) == 5200
    assert figures.monthly_amount(3000, "month", 3) == 1000
    assert figures.monthly_amount(100, "day", 1) == 3042


def test_today_follows_the_clock(store, monkeypatch):
    with store.session() as session:
        sale(session, 4900, at=NOW)
        session.commit()
    monkeypatch.setattr(clock, "utcnow", lambda: NOW + timedelta(days=1))
    text = page_text(store.browser("owner").get("/admin/dashboard"))
    assert "Today is 16 Mar 2026" in text and re.search(r'Sales today</h3> <p class="figure">0</p>', text)
    assert re.search(r'Sales, last 30 days</h3> <p class="figure">1</p>', text)
