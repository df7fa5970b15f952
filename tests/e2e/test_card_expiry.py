"""The card-expiry warning on the sandbox, driven by the lifecycle simulator's clock: `CardExpiring`
once per card and billing, about 30 days before the card stops working; none for a card replaced
in time or a cancelled billing. Real services, broker and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from postsale.contracts import CardExpiring, topics
from tests.support import (create_offer, create_product, csrf_token, eventually, events_on_topic, pay, set_up_account,
                           start_checkout)

pytestmark = pytest.mark.e2e
SANDBOX = pytest.mark.parametrize("suite", ["postgresql"], indirect=True)


def month_after(moment: datetime, days: int) -> tuple[int, int]:
    later = moment + timedelta(days=days)
    return later.month, later.year


def card_ends(month: int, year: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)


def buy(suite, offer: dict, expiry: tuple[int, int], *, log_in: bool = False) -> tuple[httpx.Client, dict]:
    email, browser = f"card-{uuid.uuid4().hex[:8]}@example.com", httpx.Client(timeout=20)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], email),
               card_expiry=f"{expiry[0]:02d}/{expiry[1] % 100:02d}")
    assert paid.status_code == 303, paid.text
    if log_in:
        assert set_up_account(browser, suite, paid.headers["location"]).status_code == 303
    with suite.admin("checkout") as checkout:
        [purchase] = checkout.get("/admin/purchases", params={"email": email}).json()
    return browser, purchase


def card_of(suite, subscription_id: str) -> dict | None:
    with suite.admin("checkout") as checkout:
        return checkout.get(f"/admin/subscriptions/{subscription_id}").json()["card"]


def advance(suite, customer_id: str, days: int) -> dict:
    with suite.admin("checkout") as checkout:
        moved = checkout.post("/admin/sandbox/clock", json={"customer_id": customer_id, "advance_days": days})
    assert moved.status_code == 200, moved.text
    return moved.json()


def warnings(kafka_bootstrap: str, subscription_ids: set[str], *, expect: int) -> list[CardExpiring]:
    return events_on_topic(kafka_bootstrap, topics.SUBSCRIPTIONS.name,
                           lambda e: isinstance(e, CardExpiring) and e.subscription_id in subscription_ids,
                           expect=expect)


@SANDBOX
def test_a_card_that_expires_before_the_next_payment_is_warned_about_once(suite, kafka_bootstrap):
    club = create_product(suite, f"Club {uuid.uuid4().hex[:6]}")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 1900, "currency": "EUR"},
                         billing={"type": "subscription", "interval": "month"})
    now = datetime.now(timezone.utc)
    soon = month_after(now, 62)  # ends in two or three months: renewals fall after it
    warn_day = card_ends(*soon) - timedelta(days=30)

    _, expiring = buy(suite, offer, soon)
    replaced_browser, replaced = buy(suite, offer, soon, log_in=True)
    _, cancelled = buy(suite, offer, soon)
    _, this_month = buy(suite, offer, (now.month, now.year))  # already within 30 days: at once
    subs = {p["subscription_id"] for p in (expiring, replaced, cancelled, this_month)}

    # The saved card, as the provider describes it, is on the subscription for the seller.
    assert eventually(lambda: card_of(suite, expiring["subscription_id"])) == {
        "brand": "visa", "last4": "4242", "exp_month": soon[0], "exp_year": soon[1]}

    # The customer saves a card that lasts for years before the warning; the seller cancels another.
    later = (12, now.year + 5)
    saved = replaced_browser.post(f"{suite.url('checkout')}/billing/subscriptions/{replaced['subscription_id']}/card",
                                  data={"card_number": "4242 4242 4242 4242", "card_expiry": f"12/{later[1] % 100}",
                                        "csrf_token": csrf_token(replaced_browser, suite)})
    assert "Your new card is saved." in saved.text
    assert eventually(lambda: (card_of(suite, replaced["subscription_id"]) or {}).get("exp_year") == later[1])
    with suite.admin("checkout") as checkout:
        assert checkout.post(f"/admin/subscriptions/{cancelled['subscription_id']}/cancel",
                             json={"when": "now"}).status_code == 200

    # The day before the warning: only the card that expires this month has been warned about.
    days_to_warning = (warn_day - now) // timedelta(days=1)
    for purchase in (expiring, replaced, cancelled):
        advance(suite, purchase["customer_id"], days_to_warning)
    [early] = warnings(kafka_bootstrap, subs, expect=1)
    assert early.subscription_id == this_month["subscription_id"]

    # Past the warning and two renewals on: one warning per card and billing, no more.
    for purchase in (expiring, replaced, cancelled):
        advance(suite, purchase["customer_id"], 2)
        advance(suite, purchase["customer_id"], 60)
    found = warnings(kafka_bootstrap, subs, expect=2)
    assert sorted(e.subscription_id for e in found) == sorted([expiring["subscription_id"],
                                                              this_month["subscription_id"]])
    [warning] = [e for e in found if e.subscription_id == expiring["subscription_id"]]
    assert (warning.card_brand, warning.card_last4, warning.card_exp_month, warning.card_exp_year) == (
        "visa", "4242", soon[0], soon[1])
    assert (warning.billing, warning.email, warning.purchase_id) == ("subscription", expiring["email"],
                                                                     expiring["id"])
    assert warn_day <= warning.noticed_at < warn_day + timedelta(days=1)
    # The payment it would fail: the first renewal once the card has ended.
    assert card_ends(*soon) <= warning.next_payment_at < card_ends(*soon) + timedelta(days=32)
