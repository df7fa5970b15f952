"""Marketing emails and their unsubscribe, across the real broker, notifications and SMTP: an
abandoned checkout's one reminder (never after paying) carries one-click unsubscribe (RFC 8058);
a mail client's one-click POST stops the next marketing email, and receipts still come."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from postsale.contracts import CheckoutAbandoned, Money
from tests.e2e.emails_support import new_customer, publish, purchase
from tests.support import eventually

pytestmark = pytest.mark.e2e


def left(email: str, offer_id: str, started_at: datetime) -> CheckoutAbandoned:
    """A checkout left unpaid, as checkout publishes it an hour later."""
    return CheckoutAbandoned(checkout_id=f"att_{uuid.uuid4().hex[:12]}", email=email, offer_id=offer_id,
                             offer_name="Yoga Basics", amount=Money(amount=4900, currency="EUR"),
                             resume_url=f"https://shop.test/offers/{offer_id}", started_at=started_at,
                             abandoned_at=started_at + timedelta(hours=1))


def status(notifications: httpx.Client, key: str) -> str | None:
    answer = notifications.get(f"/admin/emails/{key}")
    return answer.json()["status"] if answer.status_code == 200 else None


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_one_click_unsubscribe_stops_marketing_emails_and_never_receipts(suite, store, smtp_inbox,
                                                                              kafka_bootstrap):
    customer_id, email = new_customer()
    first = left(email, store.offer_id, datetime.now(timezone.utc) - timedelta(hours=1))
    await publish(kafka_bootstrap, first)
    reminder = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"abandoned-checkout:{first.checkout_id}",
                                   timeout=60)
    assert reminder["To"] == email and reminder["Subject"] == "You left Yoga Basics in your checkout"
    assert reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = str(reminder["List-Unsubscribe"]).strip().strip("<>")
    assert unsubscribe_url.startswith(f"{suite.url('notifications')}/unsubscribe/")

    page = httpx.get(unsubscribe_url)  # a link scanner, or the customer: asks, changes nothing
    assert page.status_code == 200 and email in page.text and "<form method=\"post\"" in page.text
    one_click = httpx.post(unsubscribe_url, content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200 and "You are unsubscribed" in one_click.text

    second = left(email, store.offer_id, datetime.now(timezone.utc))
    bought = purchase(customer_id, email, offer_id=f"other_{uuid.uuid4().hex[:6]}", products=[(store.product_id, "Yoga")],
                      at=datetime.now(timezone.utc))
    await publish(kafka_bootstrap, second, bought)
    receipt = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{bought.purchase_id}",
                                  timeout=60)
    assert receipt["To"] == email and receipt["List-Unsubscribe"] is None
    with suite.admin("notifications") as notifications:
        assert eventually(lambda: status(notifications, f"abandoned-checkout:{second.checkout_id}")) == "suppressed"
    assert not smtp_inbox.with_key(f"abandoned-checkout:{second.checkout_id}")

    # The preferences page takes it back.
    preferences = httpx.get(unsubscribe_url.replace("/unsubscribe/", "/preferences/"))
    assert preferences.status_code == 200 and "Your email preferences" in preferences.text
    saved = httpx.post(unsubscribe_url.replace("/unsubscribe/", "/preferences/"), data={"marketing": "yes"})
    assert saved.status_code == 200 and "Saved." in saved.text
    third = left(email, store.offer_id, datetime.now(timezone.utc))
    await publish(kafka_bootstrap, third)
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"abandoned-checkout:{third.checkout_id}", timeout=60)

    unknown = httpx.get(f"{suite.url('notifications')}/unsubscribe/{'x' * 32}")
    assert unknown.status_code == 404 and "This link is not valid" in unknown.text


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_an_abandoned_checkout_is_reminded_once_and_not_when_paid_meanwhile(suite, store, smtp_inbox, kafka_bootstrap):
    customer_id, email = new_customer()
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    paid = purchase(customer_id, email, offer_id=store.offer_id, products=[(store.product_id, "Yoga")],
                    at=started + timedelta(minutes=10))
    await publish(kafka_bootstrap, paid)
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{paid.purchase_id}", timeout=60)
    stale, other = left(email, store.offer_id, started), left(email, f"off_{uuid.uuid4().hex[:6]}", started)
    # One partition (keyed by email), so in this order; the last one published twice, as a retry would.
    await publish(kafka_bootstrap, stale, other, other)
    last = left(email, f"off_{uuid.uuid4().hex[:6]}", started)
    await publish(kafka_bootstrap, last)  # once it is sent, everything before it was handled
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"abandoned-checkout:{last.checkout_id}", timeout=60)
    with suite.admin("notifications") as notifications:
        assert status(notifications, f"abandoned-checkout:{stale.checkout_id}") is None
        assert eventually(lambda: status(notifications, f"abandoned-checkout:{other.checkout_id}") == "sent")
        assert len([e for e in notifications.get("/admin/emails", params={"to": email}).json()
                    if e["template"] == "abandoned_checkout"]) == 2  # other's and last's
    assert not smtp_inbox.with_key(f"abandoned-checkout:{stale.checkout_id}")
    assert len(smtp_inbox.with_key(f"abandoned-checkout:{other.checkout_id}")) == 1
