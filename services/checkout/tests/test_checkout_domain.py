"""Checkout's rules without I/O: price models, coupons, quotes, the funnel and post-purchase routing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from postsale.checkout.domain.billing import BillingTerms, add_months, chosen_amount_problem, terms_problem
from postsale.checkout.domain.coupons import CouponRules, redeem_problem, rules_problem
from postsale.checkout.domain.funnel import FunnelStep, Position, next_position, offer_at, start
from postsale.checkout.domain.money import (AmountError, NotAnAmount, amount_problem, format_major, format_money,
                                            max_amount, parse_major, read_major)
from postsale.checkout.domain.post_purchase import PostPurchase, next_step, settings_problem
from postsale.checkout.domain.quote import make_quote

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def test_amounts_follow_each_currencys_minor_units_and_a_sane_maximum():
    assert format_money(4900, "EUR") == "49.00 EUR"
    assert format_money(4900, "JPY") == "4,900 JPY"
    assert format_money(4900, "KWD") == "4.900 KWD"
    assert format_major(2550, "EUR") == "25.50"
    assert parse_major("25.5", "EUR") == 2550 and parse_major("25,50", "EUR") == 2550
    assert parse_major("1,000", "EUR") is None and parse_major("1 000", "EUR") is None  # no thousands separators
    assert parse_major("12.345", "EUR") is None and parse_major("abc", "EUR") is None and parse_major("", "EUR") is None
    assert max_amount("EUR") == 100_000_000
    assert amount_problem(2**63, "EUR") == "The amount may be at most 1,000,000.00 EUR."
    assert amount_problem(0, "EUR") == "The amount must be more than 0."


@pytest.mark.parametrize(("typed", "currency", "minor"), [
    ("10,50", "EUR", 1050), ("10.50", "EUR", 1050), (" 10.5 ", "EUR", 1050), ("10", "EUR", 1000), ("0,99", "USD", 99),
    ("1500", "JPY", 1500), ("1.5", "KWD", 1500), ("0,500", "KWD", 500), ("01.500", "KWD", 1500), ("1500", "KWD", 1500000),
])
def test_an_amount_takes_one_decimal_mark_a_point_or_a_comma(typed, currency, minor):
    assert read_major(typed, currency) == minor


@pytest.mark.parametrize(("typed", "currency", "problem"), [
    ("1,000", "EUR", "“1,000” has 3 decimals and EUR has 2: write thousands without a separator"),
    ("1.000", "EUR", "“1.000” has 3 decimals and EUR has 2"),
    ("1.000,50", "EUR", "has a thousands separator or more than one mark"),
    ("1,000.50", "USD", "has a thousands separator or more than one mark"),
    ("1 000", "EUR", "has a thousands separator or more than one mark"),
    ("10.50", "JPY", "JPY has no decimals: enter a whole amount without separators"),
    ("1,500", "JPY", "JPY has no decimals"),
    ("1,500", "KWD", "“1,500” could mean 1.500 or 1500 KWD: write 1500 for the thousands, or 01.500 for the decimals."),
])
def test_an_ambiguous_amount_is_refused_with_the_reason(typed, currency, problem):
    with pytest.raises(AmountError) as refused:
        read_major(typed, currency)
    assert problem in str(refused.value) and not isinstance(refused.value, NotAnAmount)


@pytest.mark.parametrize("typed", ["", "twelve", "-5", "²", "١٢", "1e3", "5 EUR", ".", "9" * 21])
def test_what_is_not_a_number_is_not_an_amount(typed):
    with pytest.raises(NotAnAmount):
        read_major(typed, "EUR")


@pytest.mark.parametrize(("terms", "problem"), [
    (BillingTerms("one_time", 4900, "EUR"), None),
    (BillingTerms("one_time", 4900, "EUX"), "'EUX' is not an ISO 4217 currency code (such as EUR or USD)."),
    (BillingTerms("one_time", 2**63, "EUR"), "The price may be at most 1,000,000.00 EUR."),
    (BillingTerms("free", 0, "EUR"), None),
    (BillingTerms("free", 100, "EUR"), "A free offer has no price: leave the amount at 0."),
    (BillingTerms("subscription", 1900, "EUR", interval="month", trial_days=14), None),
    (BillingTerms("subscription", 1900, "EUR"), "A subscription needs an interval: day, week, month or year."),
    (BillingTerms("subscription", 1900, "EUR", interval="year", interval_count=9),
     "The interval count must be between 1 and 5 for years."),
    (BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3), None),
    (BillingTerms("payment_plan", 9900, "EUR", interval="month"), "A payment plan needs from 2 to 60 instalments."),
    (BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3, trial_days=7),
     "Only a subscription can have a free trial."),
    (BillingTerms("one_time", 4900, "EUR", trial_days=7), "Only a subscription or a payment plan has an interval or a trial."),
    (BillingTerms("pay_what_you_want", 2500, "EUR", minimum=500), None),
    (BillingTerms("pay_what_you_want", 2500, "EUR"), "Pay what you want needs a minimum amount (0 lets buyers pay nothing)."),
    (BillingTerms("pay_what_you_want", 400, "EUR", minimum=500), "The suggested amount must not be below the minimum."),
])
def test_a_seller_gets_a_clear_message_for_each_impossible_price_model(terms, problem):
    assert terms_problem(terms) == problem


def test_what_each_price_model_charges_at_checkout():
    assert BillingTerms("one_time", 4900, "EUR").due_now() == 4900
    assert BillingTerms("free", 0, "EUR").due_now() == 0
    assert BillingTerms("subscription", 1900, "EUR", interval="month", trial_days=14).due_now() == 0
    assert BillingTerms("subscription", 1900, "EUR", interval="month").due_now() == 1900
    assert BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3).due_now() == 9900
    pwyw = BillingTerms("pay_what_you_want", 2500, "EUR", minimum=500)
    assert pwyw.due_now(1200) == 1200
    assert chosen_amount_problem(pwyw, 499) == "The least you can pay is 5.00 EUR."
    assert chosen_amount_problem(pwyw, None) == "Enter the amount you want to pay."


def test_periods_end_on_the_same_day_or_the_last_of_a_shorter_month():
    assert add_months(datetime(2026, 1, 31, tzinfo=timezone.utc), 1) == datetime(2026, 2, 28, tzinfo=timezone.utc)
    assert add_months(datetime(2026, 11, 15, tzinfo=timezone.utc), 3) == datetime(2027, 2, 15, tzinfo=timezone.utc)
    yearly = BillingTerms("subscription", 9900, "EUR", interval="year")
    assert yearly.period_end(NOW) == datetime(2027, 11, 28, 12, 0, tzinfo=timezone.utc)
    assert BillingTerms("subscription", 100, "EUR", interval="week", interval_count=2).period_end(NOW).day == 12
    assert BillingTerms("subscription", 1900, "EUR", interval="month", trial_days=14).describe() == \
        "19.00 EUR a month after a 14-day free trial"
    assert BillingTerms("payment_plan", 9900, "EUR", interval="month", instalments=3).describe() == \
        "3 payments of 99.00 EUR a month"


def test_coupons_take_off_a_percent_or_an_amount_and_say_why_they_do_not_apply():
    percent = CouponRules("LAUNCH20", "percent", percent_off=20, offer_ids=("offer_a",))
    fixed = CouponRules("TENOFF", "fixed", amount_off=1000, currency="EUR", expires_at=NOW, max_redemptions=5)
    assert percent.discount(4900) == 980 and fixed.discount(4900) == 1000 and fixed.discount(500) == 500
    assert redeem_problem(percent, offer_ids=["offer_a"], currency="EUR", now=NOW, redemptions=0) is None
    assert redeem_problem(percent, offer_ids=["offer_b"], currency="EUR", now=NOW, redemptions=0) == \
        "The code LAUNCH20 does not apply to this purchase."
    assert redeem_problem(fixed, offer_ids=["x"], currency="EUR", now=NOW, redemptions=0) == "The code TENOFF has expired."
    early = NOW.replace(year=2025)
    assert redeem_problem(fixed, offer_ids=["x"], currency="EUR", now=early, redemptions=5) == \
        "The code TENOFF has been used up."
    assert redeem_problem(fixed, offer_ids=["x"], currency="USD", now=early, redemptions=0) == \
        "The code TENOFF does not apply to prices in USD."
    assert rules_problem(CouponRules("X", "percent", percent_off=20)).startswith("A code is 2 to 40")
    assert rules_problem(CouponRules("BIG", "percent", percent_off=120)) == "A percent coupon takes off from 1 to 100 percent."
    assert rules_problem(CouponRules("REP", "percent", percent_off=10, duration="repeating")) == \
        "A repeating coupon lasts from 1 to 120 billing periods."
    assert CouponRules("REP", "percent", percent_off=10, duration="repeating", duration_periods=3).periods() == 3


def test_a_quote_discounts_only_the_offers_the_coupon_names_and_adds_the_bump():
    course = BillingTerms("one_time", 4900, "EUR")
    workbook = BillingTerms("one_time", 1500, "EUR")
    coupon = CouponRules("LAUNCH20", "percent", percent_off=20, offer_ids=("offer_course",))
    quote = make_quote([("offer_course", "Course", course, False), ("offer_book", "Workbook", workbook, True)],
                       coupon=coupon)
    assert [line.due_now for line in quote.lines] == [3920, 1500]
    assert (quote.total, quote.discount, quote.needs_payment) == (5420, 980, True)
    trial = make_quote([("o", "Club", BillingTerms("subscription", 1900, "EUR", interval="month", trial_days=7), False)],
                       coupon=None)
    assert (trial.total, trial.saves_method, trial.needs_payment) == (0, True, True)
    free = make_quote([("o", "Guide", BillingTerms("free", 0, "EUR"), False)], coupon=None)
    assert free.needs_payment is False


def test_declining_an_upsell_shows_its_downsell_then_the_next_step():
    steps = [FunnelStep("offer_up1", "offer_down1"), FunnelStep("offer_up2")]
    position = start(steps)
    assert offer_at(steps, position) == "offer_up1"
    accepted = next_position(steps, position, accepted=True)
    assert accepted == Position(1)
    declined = next_position(steps, position, accepted=False)
    assert declined == Position(0, downsell=True) and offer_at(steps, declined) == "offer_down1"
    assert next_position(steps, declined, accepted=False) == Position(1)
    assert next_position(steps, Position(1), accepted=False) is None
    assert start([]) is None


def test_post_purchase_routing_for_new_returning_and_earlier_buyers():
    default = PostPurchase()
    assert next_step(default, has_account=False, bought_before=False) == "account_page"
    assert next_step(default, has_account=True, bought_before=False) == "library"
    both = PostPurchase(require_password=True, skip_account_page=True, destination="landing_page",
                        landing_page_url="https://seller.example/welcome")
    assert next_step(both, has_account=False, bought_before=False) == "password_set"  # the password wins
    skip = PostPurchase(skip_account_page=True, destination="landing_page", landing_page_url="https://seller.example/")
    assert next_step(skip, has_account=False, bought_before=False) == "destination"
    assert next_step(skip, has_account=False, bought_before=True) == "account_page"
    assert settings_problem(PostPurchase(skip_account_page=True)) == \
        "The account creation page can only be skipped when the buyer goes on to a landing page."
    assert settings_problem(PostPurchase(destination="landing_page", landing_page_url="javascript:alert(1)")) == \
        "The landing page needs an http(s) URL of at most 2000 characters."
