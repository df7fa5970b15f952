"""The seller's side of accounts: a customer added by hand (and only such a customer) gets the
welcome email with login information; a customer who cannot log in gets a new link; the seller sees
activation, last activity and the account emails with whether the relay took them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.accounts import activity, customers
from postsale.accounts.adapters.tables import ActivityPublicationRow, ActivityRecord
from postsale.accounts.entrypoints import admin
from postsale.contracts import (AccountSetupLinkIssued, ContentOpened, CustomerActivity, CustomerRegistered, EmailFailed, EmailSent,
                                LoginLinkIssued)
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.auth import SESSION_COOKIE
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging.consumer import apply_once
from test_accounts_setup import ACCOUNTS, PASSWORD, Accounts, details

pytestmark = pytest.mark.unit
TOKEN = "admin-token-for-tests-only"


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    accounts = Accounts(tmp_path, monkeypatch)
    accounts.app.state.admin_token = TOKEN
    accounts.app.state.activity_throttle = ActivityThrottle()
    accounts.app.include_router(admin.admin)
    return accounts


def seller(accounts: Accounts):
    client = accounts.browser()
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def of_type(accounts, kind):
    return [e for e in accounts.published() if isinstance(e, kind)]


def test_a_customer_added_by_the_seller_gets_the_welcome_email_and_sets_up_the_account(accounts):
    api = seller(accounts)
    assert accounts.browser().post("/admin/customers", json={"email": "x@example.com"}, csrf=False).status_code == 401
    added = api.post("/admin/customers", json={"email": " Ann@Example.com", "first_name": "Ann", "last_name": "Lee",
                                               "offer_ids": ["off_1", "off_2", "off_1"]})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["email"], body["source"], body["activated"], body["requested_offer_ids"]) == (
        "ann@example.com", "seller", False, ["off_1", "off_2"])
    [registered] = of_type(accounts, CustomerRegistered)
    assert (registered.source, registered.offer_ids, registered.first_name) == ("seller", ["off_1", "off_2"], "Ann")
    [welcome] = of_type(accounts, AccountSetupLinkIssued)
    assert welcome.reason == "added_by_seller" and welcome.url.startswith(f"{ACCOUNTS}/setup?token=")

    again = api.post("/admin/customers", json={"email": "ann@example.com", "first_name": "A", "last_name": "L"})
    assert again.status_code == 409 and body["id"] in again.text

    browser = accounts.browser()
    page = browser.get(welcome.url.removeprefix(ACCOUNTS))
    assert "Create your account" in page.text and "ann@example.com" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    assert browser.post("/setup", data=details(token)).status_code == 303
    assert api.get(f"/admin/customers/{body['id']}").json()["activated"] is True


@pytest.mark.parametrize("body", [
    {"email": "not an email", "first_name": "A", "last_name": "B"},
    {"email": "a@example.com", "first_name": "A" * 101, "last_name": "B"},
    {"email": "a@example.com", "first_name": "", "last_name": "B"},
    {"email": "a@example.com" + "x" * 300, "first_name": "A", "last_name": "B"},
    {"email": "a@example.com", "first_name": "A", "last_name": "B", "offer_ids": ["o"] * 51},
    {"email": "a@example.com", "first_name": "A", "last_name": "B", "offer_ids": ["o" * 101]},
])
def test_what_the_seller_sends_has_limits(accounts, body):
    assert seller(accounts).post("/admin/customers", json=body).status_code == 422
    assert accounts.published() == []


def test_resend_gives_a_setup_link_before_setup_and_a_login_link_after(accounts):
    api = seller(accounts)
    customer_id = api.post("/admin/customers", json={"email": "bo@example.com", "first_name": "Bo",
                                                     "last_name": "Ek"}).json()["id"]
    resent = api.post(f"/admin/customers/{customer_id}/resend-setup-link")
    assert resent.json() == {"sent": "setup_link", "email": "bo@example.com"}
    first, second = of_type(accounts, AccountSetupLinkIssued)
    assert second.reason == "added_by_seller" and second.url != first.url

    browser = accounts.browser()
    assert browser.post("/setup", data=details(second.url.rsplit("token=", 1)[1])).status_code == 303
    assert api.post(f"/admin/customers/{customer_id}/resend-setup-link").json()["sent"] == "login_link"
    [login_link] = of_type(accounts, LoginLinkIssued)
    assert login_link.reason == "seller" and login_link.email == "bo@example.com"
    assert api.post("/admin/customers/cus_nobody/resend-setup-link").status_code == 404


def test_a_buyer_never_gets_the_seller_welcome(accounts):
    from test_accounts_setup import browser_token, purchase

    accounts.deliver(purchase("cy@example.com", browser_token()[1]))
    assert [link.reason for link in of_type(accounts, AccountSetupLinkIssued)] == ["welcome"]


def test_the_seller_sees_last_activity_and_which_account_emails_the_relay_took(accounts):
    api = seller(accounts)
    customer_id = api.post("/admin/customers", json={"email": "dee@example.com", "first_name": "Dee",
                                                     "last_name": "Ro"}).json()["id"]
    empty = api.get(f"/admin/customers/{customer_id}").json()
    assert empty["last_activity_at"] is None and empty["account_emails"] == []

    now = datetime.now(timezone.utc)
    emails = SUBSCRIPTION(EmailSent)
    apply_once(accounts.engine, emails.consumer_name, customers.record_account_email,
               EmailSent(email_key="account-setup:e1", template="account_setup", to="dee@example.com",
                         customer_id=customer_id, sent_at=now), uuid.uuid4().hex)
    apply_once(accounts.engine, emails.consumer_name, customers.record_account_email,
               EmailFailed(email_key="login-link:e2", template="login_link", to="dee@example.com",
                           customer_id=customer_id, attempts=8, error="550 mailbox unavailable",
                           failed_at=now + timedelta(seconds=1)), uuid.uuid4().hex)
    for report in (EmailFailed(email_key="login-link:e3", template="login_link", to="dee@example.com",
                               customer_id=customer_id, attempts=3, error="timed out", failed_at=now),
                   EmailSent(email_key="login-link:e3", template="login_link", to="dee@example.com",  # the later wins
                             customer_id=customer_id, sent_at=now + timedelta(seconds=2))):
        apply_once(accounts.engine, emails.consumer_name, customers.record_account_email, report, uuid.uuid4().hex)
    apply_once(accounts.engine, emails.consumer_name, customers.record_account_email,  # not an account email
               EmailSent(email_key="purchase-confirmation:p1", template="purchase_confirmation", to="dee@example.com",
                         customer_id=customer_id, sent_at=now), uuid.uuid4().hex)
    for kind, moment in (("library_visit", now), ("lesson", now + timedelta(minutes=1)),
                         ("lesson", now - timedelta(days=1))):  # an older lesson changes nothing
        opened(accounts, customer_id, kind, moment, product_id=None if kind == "library_visit" else "prod_1")

    seen = api.get(f"/admin/customers/{customer_id}").json()
    assert [(e["template"], e["status"], e["relay_accepted"], e["attempts"], e["error"])
            for e in seen["account_emails"]] == [("login_link", "sent", True, 3, None),
                                                 ("login_link", "failed", False, 8, "550 mailbox unavailable"),
                                                 ("account_setup", "sent", True, None, None)]
    assert seen["last_activity"]["library_visit"] is not None and seen["last_activity"]["download"] is None
    assert datetime.fromisoformat(seen["last_activity"]["lesson"]) == now + timedelta(minutes=1)
    assert datetime.fromisoformat(seen["last_activity_at"]) == now + timedelta(minutes=1)


def test_a_login_is_activity_published_at_most_once_per_few_minutes(accounts):
    api = seller(accounts)
    customer_id = api.post("/admin/customers", json={"email": "eve@example.com", "first_name": "Eve",
                                                     "last_name": "Ng"}).json()["id"]
    [link] = of_type(accounts, AccountSetupLinkIssued)
    accounts.browser().post("/setup", data=details(link.url.rsplit("token=", 1)[1]))
    for _ in range(3):
        browser = accounts.browser()
        assert browser.post("/login", data={"email": "eve@example.com", "password": PASSWORD}).status_code == 303
        assert browser.cookies.get(SESSION_COOKIE)
    [login] = of_type(accounts, CustomerActivity)
    assert (login.customer_id, login.kind) == (customer_id, "login")
    assert api.get(f"/admin/customers/{customer_id}").json()["last_activity"]["login"] is not None


def opened(accounts, customer_id: str, kind: str, at: datetime, product_id: str | None = "prod_1") -> bool:
    """Entitlements' `ContentOpened` delivered to accounts' consumer."""
    return apply_once(accounts.engine, SUBSCRIPTION(ContentOpened).consumer_name, activity.record_content_opened,
                      ContentOpened(customer_id=customer_id, kind=kind, product_id=product_id, opened_at=at),
                      uuid.uuid4().hex)


def test_what_customers_open_is_kept_and_published_as_customer_activity(accounts):
    """Entitlements throttles what it sends; accounts keeps the latest of each kind and passes each on once."""
    now = datetime.now(timezone.utc)
    event = ContentOpened(customer_id="cus_1", kind="lesson", product_id="prod_1", opened_at=now)
    for _ in range(2):  # redelivered: the inbox drops the copy
        apply_once(accounts.engine, SUBSCRIPTION(ContentOpened).consumer_name, activity.record_content_opened,
                   event, "evt-1")
    opened(accounts, "cus_1", "download", now + timedelta(minutes=4))
    opened(accounts, "cus_1", "lesson", now + timedelta(minutes=6))
    opened(accounts, "cus_1", "lesson", now - timedelta(minutes=1))  # late: published, but not the latest kept
    published = [(e.customer_id, e.kind, e.occurred_at) for e in of_type(accounts, CustomerActivity)]
    assert published == [("cus_1", "lesson", now), ("cus_1", "download", now + timedelta(minutes=4)),
                         ("cus_1", "lesson", now + timedelta(minutes=6)), ("cus_1", "lesson", now - timedelta(minutes=1))]
    with Session(accounts.engine) as session:
        [kept] = session.exec(select(ActivityRecord).where(ActivityRecord.customer_id == "cus_1",
                                                           ActivityRecord.kind == "lesson")).all()
        assert as_utc(kept.last_at) == now + timedelta(minutes=6)


def test_the_throttle_is_one_row_per_customer_kind_and_product_whatever_the_replica(accounts):
    """Two replicas are two throttles on one database: the row decides, not the process."""
    now = datetime.now(timezone.utc)
    replica_a, replica_b = ActivityThrottle(), ActivityThrottle()
    with Session(accounts.engine) as session:
        def claim(throttle, at, kind="lesson"):
            return throttle.claim(session, ActivityPublicationRow, customer_id="c1", kind=kind, product_id=None,
                                  now=at)

        assert claim(replica_a, now) and not claim(replica_b, now) and not claim(replica_a, now + timedelta(minutes=4))
        assert claim(replica_b, now, kind="download")
        assert not claim(replica_b, now - timedelta(hours=1))  # an older moment never moves it back
        assert claim(replica_b, now + timedelta(minutes=5)) and not claim(replica_a, now + timedelta(minutes=9))
        session.commit()


def SUBSCRIPTION(event_type):  # noqa: N802
    from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS

    return next(s for s in SUBSCRIPTIONS if event_type in s.handlers)
