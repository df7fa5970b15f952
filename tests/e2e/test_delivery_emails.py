"""The emails of deliveries across the real services: a file product's download link reaches the
customer (and downloads the file), a buyer of a software product gets by email the license key the
library shows, and access granted for a limited time is announced before it
ends, time moved by the follow-ups' simulator."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from postsale.contracts import AccessPolicy, Money, PurchaseCompleted, PurchasedProduct, delivery_fields
from tests.e2e.emails_support import new_customer, publish
from tests.support import create_offer, eventually, pay, set_up_account, start_checkout

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]


def bought(customer_id: str, email: str, product_id: str, delivery_type: str, at: datetime,
           **fields) -> PurchaseCompleted:
    return PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:12]}", customer_id=customer_id, email=email, offer_id="offer_emails",
        offer_name="Test offer",
        products=[PurchasedProduct(product_id=product_id, name="The Guide", **delivery_fields(delivery_type))],
        amount=Money(amount=1900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=at, new_customer=False, **fields)


async def test_a_download_link_is_emailed_and_downloads_the_file(suite, smtp_inbox, kafka_bootstrap):
    with suite.admin("entitlements") as entitlements:
        product = entitlements.post("/admin/products", json={"name": f"Guide {uuid.uuid4().hex[:6]}",
                                                             "delivery_type": "download"}).json()
        uploaded = entitlements.post(f"/admin/products/{product['id']}/files",
                                     files={"file": ("guide.pdf", b"%PDF-1.7 guide", "application/pdf")})
        assert uploaded.status_code == 201, uploaded.text
    customer_id, email = new_customer()
    await publish(kafka_bootstrap, bought(customer_id, email, product["id"], "download", datetime.now(timezone.utc)))

    message = smtp_inbox.wait_for(lambda m: m["To"] == email and str(m["X-Postsale-Email-Key"]).startswith(
        "download-link:"), timeout=60)
    assert message["Subject"] == f"Your download: {product['name']}"
    text = message.get_body(("plain",)).get_content()
    link = next(line for line in text.splitlines() if line.startswith(suite.url("entitlements")) and "library" not in line)
    downloaded = httpx.get(link, timeout=10)
    assert downloaded.status_code == 200 and downloaded.content == b"%PDF-1.7 guide"
    assert f"{suite.url('entitlements')}/library" in text


def test_a_buyer_of_a_license_key_product_gets_by_email_the_key_the_library_shows(suite, smtp_inbox):
    with suite.admin("entitlements") as entitlements:
        made = entitlements.post("/admin/products", json={
            "name": f"Pixel Studio {uuid.uuid4().hex[:6]}", "delivery_type": "license_key",
            "license_key": {"activation_limit": 3, "expires_days": 365, "prefix": "PXS"}})
        assert made.status_code == 201, made.text
    product = made.json()
    offer = create_offer(suite, name=f"{product['name']} offer", product_ids=[product["id"]])
    email = f"maker-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], email))
    assert paid.status_code == 303, paid.text
    assert set_up_account(browser, suite, paid.headers["location"]).status_code == 303

    library = eventually(lambda: "data-license-key" in (page := browser.get(f"{suite.url('entitlements')}/library")
                                                        ).text and page.text)
    shown = library.split("<code data-license-key>", 1)[1].split("</code>", 1)[0]
    assert shown.startswith("PXS-")

    message = smtp_inbox.wait_for(lambda m: m["To"] == email and str(m["X-Postsale-Email-Key"]).startswith(
        "license-key:lic_"), timeout=60)
    assert message["Subject"] == f"Your license key: {product['name']}"
    text = message.get_body(("plain",)).get_content()
    lines = text.splitlines()
    assert lines[lines.index("Your key:") + 1] == shown
    assert "Activate it on up to 3 devices; it works until " in text
    assert f"{suite.url('entitlements')}/library" in text
    assert f"<code data-license-key>{shown}</code>" in message.get_body(("html",)).get_content()
    assert len(smtp_inbox.with_key(message["X-Postsale-Email-Key"])) == 1
    browser.close()


async def test_access_for_eight_days_is_announced_two_days_before_it_ends(suite, smtp_inbox, kafka_bootstrap):
    with suite.admin("entitlements") as entitlements:
        product = entitlements.post("/admin/products", json={"name": f"Bootcamp {uuid.uuid4().hex[:6]}",
                                                             "delivery_type": "membership"}).json()
    customer_id, email = new_customer()
    t0 = datetime.now(timezone.utc)
    await publish(kafka_bootstrap, bought(customer_id, email, product["id"], "membership", t0,
                                          access_policy=AccessPolicy(access_days=8)))
    with suite.admin("notifications") as notifications:
        def run(until: datetime) -> dict:
            answer = notifications.post("/admin/sandbox/follow-ups", json={"customer_id": customer_id,
                                                                           "until": until.isoformat()})
            assert answer.status_code == 200, answer.text
            return answer.json()

        # Planned once entitlements' grant (with its end) has reached notifications.
        [key] = eventually(lambda: run(t0)["pending"])
        assert key.startswith(f"access-ending:{customer_id}:{product['id']}:")
        assert run(t0 + timedelta(days=5, hours=23))["ran"] == 0
        assert run(t0 + timedelta(days=6, minutes=1))["ran"] == 1
        refused = notifications.post("/admin/sandbox/follow-ups", json={"customer_id": "cus_nobody",
                                                                        "until": t0.isoformat()})
        assert refused.status_code == 404
    message = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == key, timeout=60)
    assert message["To"] == email and message["Subject"].startswith(f"Your access to {product['name']} ends on ")
