"""The seller edits an email's template through the admin API: previews it in the theme, sends a
test, and the next real email uses it; a broken template is refused with the reason. The seller's
notification of each sale goes to the addresses the seller sets."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.e2e.emails_support import new_customer, publish, purchase
from tests.support import eventually

pytestmark = pytest.mark.e2e


def body(message, kind: str) -> str:
    return message.get_body(preferencelist=(kind,)).get_content()


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_an_edited_template_is_previewed_tested_and_used_by_the_next_email(suite, store, smtp_inbox,
                                                                                 kafka_bootstrap):
    with suite.admin("notifications") as notifications:
        listed = {t["name"]: t for t in notifications.get("/admin/templates").json()}
        for name in ("purchase_confirmation", "download_link", "card_expiring", "access_ending", "seller_sale"):
            assert name in listed and not listed[name]["edited"]
        shown = notifications.get("/admin/templates/purchase_confirmation").json()
        assert shown["subject"].startswith("Your purchase:") and "purchase" in {v["name"] for v in shown["variables"]}
        assert notifications.get("/admin/templates/no_such_email").status_code == 404

        broken = notifications.put("/admin/templates/purchase_confirmation", json={
            "subject": "Hi", "text": "{{ purchase.__class__ }}", "html": "<p>Hi</p>"})
        assert broken.status_code == 422 and "unsafe" in broken.json()["detail"]

        edited = {"subject": "Welcome to {{ purchase.offer_name }}!",
                  "text": "Hello {{ purchase.email }}, start here: {{ library_url }}",
                  "html": '<h1 style="{{ style.heading }}">Hello!</h1><a href="{{ library_url }}" '
                          'style="{{ style.button }}">Start</a>'}
        draft = notifications.post("/admin/templates/purchase_confirmation/preview", json={"draft": edited})
        assert draft.status_code == 200, draft.text
        assert draft.json()["subject"] == "Welcome to Creator Membership: lifetime access!"
        assert "<h1" in draft.json()["html"] and "Start</a>" in draft.json()["html"]

        saved = notifications.put("/admin/templates/purchase_confirmation", json=edited)
        try:
            assert saved.status_code == 200 and saved.json()["edited"], saved.text
            test = notifications.post("/admin/templates/purchase_confirmation/test-send", json={"to": "me@shop.test"})
            assert test.status_code == 202, test.text
            tested = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == test.json()["email_key"], timeout=60)
            assert tested["To"] == "me@shop.test"
            assert tested["Subject"] == "[Test] Welcome to Creator Membership: lifetime access!"

            customer_id, email = new_customer()
            bought = purchase(customer_id, email, offer_id=store.offer_id, offer_name="Yoga Basics",
                              products=[(store.product_id, store.product_name)], at=datetime.now(timezone.utc))
            await publish(kafka_bootstrap, bought)
            message = smtp_inbox.wait_for(
                lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{bought.purchase_id}", timeout=60)
        finally:
            assert notifications.delete("/admin/templates/purchase_confirmation").status_code == 204
    assert message["To"] == email and message["Subject"] == "Welcome to Yoga Basics!"
    assert body(message, "plain").startswith(f"Hello {email}, start here: ")
    assert "Start</a>" in body(message, "html")


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_the_seller_hears_of_each_sale_at_the_addresses_set_and_not_once_turned_off(
        suite, store, smtp_inbox, kafka_bootstrap):
    with suite.admin("notifications") as notifications:
        refused = notifications.put("/admin/email-settings", json={"seller_addresses": ["not an address"]})
        assert refused.status_code == 422
        assert notifications.put("/admin/email-settings", json={
            "seller_addresses": ["owner@shop.test"], "notify_each_sale": True}).status_code == 200
        try:
            customer_id, email = new_customer()
            first = purchase(customer_id, email, offer_id=store.offer_id, products=[(store.product_id, "Course")],
                             at=datetime.now(timezone.utc))
            await publish(kafka_bootstrap, first)
            sale = smtp_inbox.wait_for(
                lambda m: m["X-Postsale-Email-Key"] == f"seller-sale:{first.purchase_id}:owner@shop.test", timeout=60)
            assert sale["To"] == "owner@shop.test" and sale["Subject"] == "New sale: The Course, 49.00 EUR"

            assert notifications.put("/admin/email-settings", json={
                "seller_addresses": ["owner@shop.test"], "notify_each_sale": False}).status_code == 200
            second = purchase(customer_id, email, offer_id=store.offer_id, products=[(store.product_id, "Course")],
                              at=datetime.now(timezone.utc))
            await publish(kafka_bootstrap, second)
            smtp_inbox.wait_for(
                lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{second.purchase_id}", timeout=60)
            eventually(lambda: notifications.get(f"/admin/emails/purchase-confirmation:{second.purchase_id}")
                       .json().get("status") == "sent")
            assert not smtp_inbox.with_key(f"seller-sale:{second.purchase_id}:owner@shop.test")
        finally:
            notifications.put("/admin/email-settings", json={"seller_addresses": [], "notify_each_sale": True})
