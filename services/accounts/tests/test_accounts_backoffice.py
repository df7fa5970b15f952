"""The back office as accounts serves it, over HTTP without a browser: the staff login and its
short-lived tokens, what support may not do, and the customer pages (list and search, profile with
last activity and account emails, adding a customer by hand, resending a link)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from postsale.accounts import customers
from postsale.accounts.entrypoints import admin, customer_pages, staff_pages
from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS
from postsale.contracts import AccountSetupLinkIssued, ContentOpened, EmailSent, LoginLinkIssued
from postsale.accounts import activity
from postsale.runtime.auth import SESSION_COOKIE
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.settings import PublicUrls
from postsale.runtime.staff import STAFF_COOKIE, StaffDep, StaffVerifier
from test_accounts_setup import ACCOUNTS, Accounts

pytestmark = pytest.mark.unit
TOKEN = "admin-token-for-tests-only"
OWNER, SUPPORT, PASSWORD = "owner@store.test", "help@store.test", "staff password 1"


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    accounts = Accounts(tmp_path, monkeypatch)
    app = accounts.app
    app.state.admin_token = TOKEN
    app.state.staff_verifier = StaffVerifier(key=app.state.signer.public_key())
    app.include_router(staff_pages.pages)
    app.include_router(customer_pages.pages)
    app.include_router(admin.admin)
    api = accounts.browser()
    for email, role in ((OWNER, "owner"), (SUPPORT, "support")):
        added = api.post("/admin/staff", json={"email": email, "name": role.title(), "role": role, "password": PASSWORD},
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert added.status_code == 201, added.text
    return accounts


def staff_browser(accounts: Accounts, email: str):
    browser = accounts.browser()
    browser.headers["Accept"] = "text/html"
    signed_in = browser.post("/admin/login", data={"email": email, "password": PASSWORD, "next": "/admin/customers"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/admin/customers"
    return browser


def test_a_page_sends_a_stranger_to_the_staff_login_and_the_right_password_lets_them_in(accounts):
    browser = accounts.browser()
    browser.headers["Accept"] = "text/html"
    sent = browser.get("/admin/customers")
    assert sent.status_code == 303
    assert sent.headers["location"] == f"{ACCOUNTS}/admin/login?next=http%3A%2F%2Faccounts.test%2Fadmin%2Fcustomers"
    page = browser.get("/admin/login", params={"next": f"{ACCOUNTS}/admin/customers"})
    assert page.status_code == 200 and 'name="password"' in page.text and 'name="csrf_token"' in page.text

    wrong = browser.post("/admin/login", data={"email": OWNER, "password": "not it at all"})
    assert wrong.status_code == 401 and "do not match a staff account" in wrong.text
    assert browser.post("/admin/login", data={"email": OWNER, "password": PASSWORD}, csrf=False).status_code == 403
    customer_token = browser.post("/admin/login", data={"email": "nobody@store.test", "password": PASSWORD})
    assert customer_token.status_code == 401  # an unknown email gets the same answer

    signed_in = browser.post("/admin/login", data={"email": OWNER, "password": PASSWORD,
                                                   "next": "https://evil.example/admin"})
    # No open redirect: the back office's first page, checkout's dashboard, instead.
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == f"{accounts.app.state.urls.checkout_url}/admin/dashboard"
    assert "HttpOnly" in signed_in.headers["set-cookie"] and "SameSite=lax" in signed_in.headers["set-cookie"]
    home = browser.get("/admin/customers")
    assert home.status_code == 200 and 'data-staff-role="owner"' in home.text
    assert 'href="http://accounts.test/admin/staff"' in home.text  # the owner sees the staff page

    # Logging out ends the session: its token is not renewed any more.
    assert browser.post("/admin/logout", data={}).status_code == 303
    assert browser.get("/admin/customers").status_code == 303


def test_a_customer_session_is_not_a_staff_session(accounts):
    browser = accounts.browser()
    browser.headers["Accept"] = "text/html"
    token = accounts.app.state.signer.sign(customer_id="cus_1", email="c@example.com", session_id="s1",
                                           lifetime=timedelta(hours=1))
    browser.cookies.set(STAFF_COOKIE, token)
    browser.cookies.set(SESSION_COOKIE, token)
    assert browser.get("/admin/customers").status_code == 303


def test_an_expired_token_is_renewed_while_the_session_is_open(accounts):
    browser = staff_browser(accounts, SUPPORT)
    claims = accounts.app.state.staff_verifier.claims(browser.cookies[STAFF_COOKIE])
    expired = accounts.app.state.signer.sign_staff(staff_id=claims["sub"], email=SUPPORT, name="Support",
                                                   role="support", session_id=claims["sid"],
                                                   lifetime=timedelta(seconds=-1))
    browser.cookies.set(STAFF_COOKIE, expired, domain="accounts.test")
    assert browser.get("/admin/customers").status_code == 303  # every service refuses an expired token
    renewed = browser.get("/admin/login", params={"next": "/admin/customers"})
    assert renewed.status_code == 303 and renewed.headers["location"] == "/admin/customers"
    assert browser.get("/admin/customers").status_code == 200


def test_support_does_not_see_or_reach_what_only_the_owner_may_do(accounts):
    support = staff_browser(accounts, SUPPORT)
    home = support.get("/admin/customers")
    assert 'data-staff-role="support"' in home.text and "/admin/staff" not in home.text
    refused = support.get("/admin/staff")
    assert refused.status_code == 403 and "Only the store's owner may do this" in html.unescape(refused.text)
    assert refused.headers["content-type"].startswith("text/html")
    forged = support.post("/admin/staff/new", data={"email": "x@store.test", "role": "owner", "password": PASSWORD})
    assert forged.status_code == 403

    owner = staff_browser(accounts, OWNER)
    assert "x@store.test" not in owner.get("/admin/staff").text
    added = owner.post("/admin/staff/new", data={"email": "new@store.test", "name": "New", "role": "support",
                                                 "password": PASSWORD})
    assert added.status_code == 303
    assert "new@store.test may now log in" in owner.get(added.headers["location"]).text
    twice = owner.post("/admin/staff/new", data={"email": "New@store.test", "name": "New", "role": "support",
                                                 "password": PASSWORD})
    assert twice.status_code == 409 and "is a staff member already" in twice.text
    weak = owner.post("/admin/staff/new", data={"email": "w@store.test", "role": "support", "password": "short"})
    assert weak.status_code == 422 and 'role="alert"' in weak.text


def test_the_customer_pages_list_search_add_and_resend(accounts):
    staff = staff_browser(accounts, SUPPORT)
    assert "No customers yet" in staff.get("/admin/customers").text
    for page in ("²", "0", "x", "999999"):  # not a page number: the first page, never an error
        assert staff.get("/admin/customers", params={"page": page}).status_code == 200
    form = staff.get("/admin/customers/new")
    assert form.status_code == 200 and 'name="email"' in form.text
    assert 'name="offer_ids"' not in form.text  # granting offers free is the owner's call
    assert 'name="offer_ids"' in staff_browser(accounts, OWNER).get("/admin/customers/new").text
    given_away = staff.post("/admin/customers/new", data={"email": "leo@example.com", "first_name": "Leo",
                                                          "last_name": "Park", "offer_ids": "off_1"})
    assert given_away.status_code == 403 and "Only the store's owner may do this" in html.unescape(given_away.text)
    assert "leo@example.com" not in staff.get("/admin/customers").text
    assert staff.post("/admin/customers/new", data={"email": "mia@example.com", "first_name": "Mia",
                                                    "last_name": "Holt"}, csrf=False).status_code == 403
    refused = staff.post("/admin/customers/new", data={"email": "not an email", "first_name": "Mia", "last_name": "H"})
    assert refused.status_code == 422 and "Enter the customer's email address" in html.unescape(refused.text)
    added = staff_browser(accounts, OWNER).post("/admin/customers/new", data={
        "email": "Mia@Example.com", "first_name": "Mia", "last_name": "Holt", "offer_ids": "off_1, off_2"})
    assert added.status_code == 303
    profile = staff.get(added.headers["location"])
    assert profile.status_code == 200 and "welcome email with their login details is on its way" in profile.text
    assert 'data-activated="false"' in profile.text and "Resend the setup link" in profile.text
    # What other services keep about the customer is one link away, on their own pages.
    urls = accounts.app.state.urls
    customer_id = added.headers["location"].split("/")[3]
    for link in (f"{urls.checkout_url}/admin/sales?customer={customer_id}",
                 f"{urls.entitlements_url}/admin/access/{customer_id}",
                 f"{urls.notifications_url}/admin/mail/sent?to=mia%40example.com"):
        assert f'href="{link}"' in profile.text
    [welcome] = [e for e in accounts.published() if isinstance(e, AccountSetupLinkIssued)]
    assert welcome.reason == "added_by_seller" and welcome.email == "mia@example.com"
    again = staff.post("/admin/customers/new", data={"email": "mia@example.com", "first_name": "M", "last_name": "H"})
    assert again.status_code == 409 and "is a customer already" in again.text

    # What the customer did and which account emails went out.
    now = datetime.now(timezone.utc)
    apply_once(accounts.engine, next(s for s in SUBSCRIPTIONS if ContentOpened in s.handlers).consumer_name,
               activity.record_content_opened,
               ContentOpened(customer_id=customer_id, kind="lesson", product_id="prod_1", opened_at=now),
               uuid.uuid4().hex)
    apply_once(accounts.engine, next(s for s in SUBSCRIPTIONS if EmailSent in s.handlers).consumer_name,
               customers.record_account_email,
               EmailSent(email_key="account-setup:x", template="account_setup", to="mia@example.com",
                         customer_id=customer_id, sent_at=now), uuid.uuid4().hex)
    profile = staff.get(f"/admin/customers/{customer_id}/profile").text
    assert re.search(r'data-kind="lesson"><time datetime="' + re.escape(now.strftime("%Y-%m-%dT%H:%M:%SZ")), profile)
    assert re.search(r'data-kind="download">never<', profile)
    assert 'data-template="account_setup" data-relay-accepted="true"' in profile

    resent = staff.post(f"/admin/customers/{customer_id}/resend", data={})
    assert resent.status_code == 303
    assert "A new setup link is on its way to mia@example.com" in staff.get(resent.headers["location"]).text
    assert len([e for e in accounts.published() if isinstance(e, AccountSetupLinkIssued)]) == 2
    assert not [e for e in accounts.published() if isinstance(e, LoginLinkIssued)]
    missing = staff.get("/admin/customers/cus_nobody/profile")
    assert missing.status_code == 404 and "No such customer" in missing.text


def test_the_list_searches_by_email_or_name_and_pages(accounts):
    api = accounts.browser()
    api.headers["Authorization"] = f"Bearer {TOKEN}"
    for n in range(customers.PAGE_SIZE + 2):
        assert api.post("/admin/customers", json={"email": f"c{n}@example.com", "first_name": f"Ann{n}",
                                                  "last_name": "Lee" if n % 2 else "Ro_w"}).status_code == 201
    staff = staff_browser(accounts, OWNER)
    first = staff.get("/admin/customers").text
    assert first.count("data-customer-id=") == customers.PAGE_SIZE and 'rel="next"' in first
    second = staff.get("/admin/customers", params={"page": "2"}).text
    assert second.count("data-customer-id=") == 2 and 'rel="prev"' in second and 'rel="next"' not in second
    assert staff.get("/admin/customers", params={"q": "C7@EXAMPLE"}).text.count("data-customer-id=") == 1
    assert staff.get("/admin/customers", params={"q": "ann3 lee"}).text.count("data-customer-id=") == 1
    assert staff.get("/admin/customers", params={"q": "o_w"}).text.count("data-customer-id=") == 14  # _ is literal
    assert "No customer's email or name contains" in html.unescape(staff.get("/admin/customers", params={"q": "%"}).text)
    assert staff.get("/admin/customers", params={"page": "x" * 50, "q": "y" * 5000}).status_code == 200


def test_any_service_verifies_staff_tokens_locally_and_redirects_the_rest_to_the_login(accounts):
    """Another service's page: `StaffDep` and the shared layout, without a call to accounts."""
    app = FastAPI()
    app.state.urls = PublicUrls()
    app.state.staff_verifier = StaffVerifier(key=accounts.app.state.signer.public_key())

    @app.get("/admin/products")
    def products(staff: StaffDep) -> dict:
        return {"staff": staff.email, "role": staff.role}

    client = TestClient(app, base_url="http://entitlements.test", follow_redirects=False)
    away = client.get("/admin/products")
    assert away.status_code == 303 and away.headers["location"].startswith(f"{ACCOUNTS}/admin/login?next=")
    token = staff_browser(accounts, SUPPORT).cookies[STAFF_COOKIE]
    client.cookies.set(STAFF_COOKIE, token)
    assert client.get("/admin/products").json() == {"staff": SUPPORT, "role": "support"}


def test_the_admin_api_answers_json_to_an_oversized_or_misspelt_body(accounts):
    api = accounts.browser()
    api.headers["Authorization"] = f"Bearer {TOKEN}"
    huge = api.post("/admin/customers", json={"email": "big@example.com", "first_name": "x" * 3_000_000})
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/json"
    assert huge.json()["message"].startswith("The request body is larger than")
    misspelt = api.post("/admin/customers", json={"email": "ann@example.com", "frist_name": "Ann"})
    assert misspelt.status_code == 422 and "frist_name" in misspelt.text
    assert accounts.published() == []  # no customer made
