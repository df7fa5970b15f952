"""The emails of deliveries and access: a card that expires before the next payment, a file
product's download link, a software product's license key, the seller's notice of a third-party call that failed for the last
time, and the reminder before time-limited access ends (not when revoked or extended since)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postsale.contracts import (AccessGranted, AccessRevoked, CardExpiring, DownloadLinkIssued,
                                IntegrationCallFailed, LicenseKeyIssued)
from postsale.notifications import followups
from postsale.notifications.adapters.tables import FollowUp
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler
from notifications_support import Clock, deliver, emails

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SHOP = "https://shop.test"


@pytest.fixture(autouse=True)
def public_urls(monkeypatch):
    monkeypatch.setenv("POSTSALE_CHECKOUT_URL", SHOP)
    monkeypatch.setenv("POSTSALE_ENTITLEMENTS_URL", "https://members.test")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def follow_ups(engine, clock) -> Scheduler:
    return Scheduler(engine, followups.FOLLOW_UPS, FollowUp, followups.run_follow_up, clock=clock)


def test_a_card_that_expires_before_the_next_payment_is_announced_once_with_the_billing_page(engine):
    event = CardExpiring(subscription_id="sub_1", billing="subscription", purchase_id="pur_1", customer_id="cus_1",
                         email="ann@example.com", offer_id="off_1", card_brand="visa", card_last4="4242",
                         card_exp_month=4, card_exp_year=2026, next_payment_at=T0 + timedelta(days=40),
                         noticed_at=T0)
    deliver(engine, event)
    deliver(engine, event)  # published again: one card, one email

    [email] = [e for e in emails(engine).values() if e.template == "card_expiring"]
    assert (email.key, email.to) == ("card-expiring:sub_1:4242:2026-04", "ann@example.com")
    assert email.subject == "Your card ending in 4242 expires soon"
    assert "The Visa ending in 4242 that pays for your subscription expires at the end of 04/2026" in email.text_body
    assert "before the next payment on 11 April 2026" in email.text_body
    assert f"{SHOP}/billing" in email.text_body and f'href="{SHOP}/billing"' in email.html_body


def test_a_download_link_is_emailed_once_per_link_with_the_library_for_a_fresh_one(engine):
    def link(link_id: str) -> DownloadLinkIssued:
        return DownloadLinkIssued(link_id=link_id, customer_id="cus_1", email="ann@example.com", product_id="prd_1",
                                  product_name="The E-book", file_name="book.pdf",
                                  url=f"https://members.test/downloads/{link_id}?sig=abc",
                                  expires_at=T0 + timedelta(hours=24), downloads_left=3, issued_at=T0)

    deliver(engine, link("dl_1"))
    deliver(engine, link("dl_1"))
    deliver(engine, link("dl_2"))
    queued = emails(engine)
    assert sorted(k for k in queued if k.startswith("download-link:")) == ["download-link:dl_1", "download-link:dl_2"]
    email = queued["download-link:dl_1"]
    assert email.subject == "Your download: The E-book"
    assert "https://members.test/downloads/dl_1?sig=abc" in email.text_body
    assert "until 03 March 2026, 09:00 UTC, 3 downloads left" in email.text_body
    assert 'href="https://members.test/downloads/dl_1?sig=abc"' in email.html_body
    assert "https://members.test/library" in email.text_body


def test_a_license_key_is_emailed_once_per_key_with_its_limits_and_the_library(engine):
    def key(license_id: str, **limits) -> LicenseKeyIssued:
        return LicenseKeyIssued(license_id=license_id, customer_id="cus_1", email="ann@example.com",
                                product_id="prd_1", product_name="Pixel Studio", license_key=f"PXS-{license_id}",
                                purchase_id="pur_1", issued_at=T0, **limits)

    deliver(engine, key("lic_1", max_activations=3, expires_at=T0 + timedelta(days=365)))
    deliver(engine, key("lic_1", max_activations=3, expires_at=T0 + timedelta(days=365)))  # redelivered
    deliver(engine, key("lic_2"))
    queued = emails(engine)
    assert sorted(k for k in queued if k.startswith("license-key:")) == ["license-key:lic_1", "license-key:lic_2"]
    email = queued["license-key:lic_1"]
    assert (email.to, email.subject) == ("ann@example.com", "Your license key: Pixel Studio")
    assert "PXS-lic_1" in email.text_body and "<code data-license-key>PXS-lic_1</code>" in email.html_body
    assert "Activate it on up to 3 devices; it works until 02 March 2027, 09:00 UTC." in email.text_body
    assert "https://members.test/library" in email.text_body
    assert 'href="https://members.test/library"' in email.html_body
    unlimited = queued["license-key:lic_2"].text_body
    assert "Activate it on as many devices as you like; it works for as long as your access lasts." in unlimited


def test_the_seller_hears_of_a_third_party_call_only_when_it_failed_for_the_last_time(engine, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_SELLER_EMAILS", "ops@shop.test")

    def failure(attempt: int, retry: bool) -> IntegrationCallFailed:
        return IntegrationCallFailed(call_id="call_1", platform="Circle", action="grant", customer_id="cus_1",
                                     email="ann@example.com", product_id="prd_1", purchase_id="pur_1", attempt=attempt,
                                     next_retry_at=T0 + timedelta(hours=attempt) if retry else None,
                                     error="HTTP 503 from https://circle.test/hooks", failed_at=T0)

    deliver(engine, failure(1, retry=True))
    deliver(engine, failure(2, retry=True))
    assert not [k for k in emails(engine) if k.startswith("seller-integration-failed:")]
    deliver(engine, failure(12, retry=False))
    deliver(engine, failure(12, retry=False))

    [email] = [e for e in emails(engine).values() if e.template == "seller_integration_failed"]
    assert (email.key, email.to) == ("seller-integration-failed:call_1:ops@shop.test", "ops@shop.test")
    assert email.subject == "Action needed: Circle did not grant access for ann@example.com"
    assert "Postsale tried 12 times to grant access on Circle" in email.text_body
    assert "HTTP 503 from https://circle.test/hooks" in email.text_body
    assert "https://members.test/admin/products/prd_1/deliveries" in email.text_body


def granted(days: float | None, *, at: datetime = T0, source: str | None = "pur_1") -> AccessGranted:
    return AccessGranted(entry_id=f"ent_{at.timestamp()}_{days}_{source}", customer_id="cus_1",
                         email="ann@example.com", product_id="prd_1", product_name="The Course",
                         delivery_type="membership", reason="purchase", actor="system", purchase_id=source,
                         granted_at=at, expires_at=at + timedelta(days=days) if days else None)


def revoked(at: datetime, source: str = "pur_1") -> AccessRevoked:
    return AccessRevoked(entry_id=f"ent_r_{at.timestamp()}", customer_id="cus_1", email="ann@example.com",
                         product_id="prd_1", product_name="The Course", delivery_type="membership",
                         reason="full refund", actor="seller", purchase_id=source, revoked_at=at)


def ending_emails(engine) -> list:
    return [e for e in emails(engine).values() if e.template == "access_ending"]


def test_access_for_thirty_days_is_reminded_a_week_before_it_ends(engine, clock, follow_ups):
    deliver(engine, granted(30))
    clock.move_to(T0 + timedelta(days=23) - timedelta(minutes=1))
    assert follow_ups.run_due() == 0
    clock.move_to(T0 + timedelta(days=23))
    assert follow_ups.run_due() == 1
    [email] = ending_emails(engine)
    assert email.to == "ann@example.com" and email.subject == "Your access to The Course ends on 01 April 2026"
    assert "https://members.test/library" in email.text_body


def test_a_short_grant_is_reminded_sooner_than_a_week(engine, clock, follow_ups):
    deliver(engine, granted(8))  # a quarter of 8 days: 2 days before it ends
    clock.move_to(T0 + timedelta(days=6) - timedelta(minutes=1))
    assert follow_ups.run_due() == 0
    clock.move_to(T0 + timedelta(days=6))
    assert follow_ups.run_due() == 1 and len(ending_emails(engine)) == 1


@pytest.mark.parametrize("since", ["revoked", "extended", "granted for good elsewhere"])
def test_access_revoked_or_extended_since_gets_no_reminder(engine, clock, follow_ups, since):
    deliver(engine, granted(30))
    later = T0 + timedelta(days=5)
    if since == "revoked":
        deliver(engine, revoked(later))
    elif since == "extended":
        deliver(engine, granted(60, at=later))  # the same source, a later end
    else:
        deliver(engine, granted(None, at=later, source=None))  # the seller's manual grant, for good
    clock.move_to(T0 + timedelta(days=29))
    follow_ups.run_due()
    if since == "extended":  # the extension has a reminder of its own, for its own end
        assert ending_emails(engine) == []
        clock.move_to(later + timedelta(days=53))
        assert follow_ups.run_due() == 1
        assert [e.subject for e in ending_emails(engine)] == ["Your access to The Course ends on 06 May 2026"]
    else:
        assert ending_emails(engine) == []
