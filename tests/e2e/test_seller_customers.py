"""The seller adds a customer by hand and helps one who cannot log in, across the four services on
the real broker: the welcome email with login information, the first login, a resent link, and
what the seller sees (activation, last activity, the account emails the relay accepted)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.support import csrf_token, eventually, form_field, log_in, log_out

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def link_in(message, pattern: str) -> str:
    return re.search(pattern, message.get_body(preferencelist=("plain",)).get_content()).group(1)


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_a_customer_added_by_hand_gets_the_welcome_email_logs_in_and_the_seller_sees_it(suite, smtp_inbox):
    email = f"manual-{uuid.uuid4().hex[:8]}@example.com"
    with suite.admin("accounts") as accounts:
        added = accounts.post("/admin/customers", json={"email": email, "first_name": "Mia", "last_name": "Holt",
                                                        "offer_ids": ["off_course"]})
        assert added.status_code == 201, added.text
        customer = added.json()
        assert (customer["source"], customer["activated"], customer["requested_offer_ids"]) == (
            "seller", False, ["off_course"])

        welcome = smtp_inbox.wait_for(lambda m: m["To"] == email, timeout=60)
        assert welcome["Subject"] == "Welcome! Your login details"
        text = welcome.get_body(preferencelist=("plain",)).get_content()
        assert f"Email: {email}" in text and f"{suite.url('accounts')}/login" in text

        # The customer lost that email: the seller resends, and a second link comes.
        assert accounts.post(f"/admin/customers/{customer['id']}/resend-setup-link").json()["sent"] == "setup_link"
        second = eventually(lambda: len(m := [x for x in smtp_inbox.messages if x["To"] == email]) == 2 and m[1],
                            timeout=60)
        link = link_in(second, r"(http\S+/setup\?token=\S+)")

        browser = httpx.Client(timeout=10)
        page = browser.get(link)
        assert page.status_code == 200 and "Create your account" in page.text and email in page.text
        created = browser.post(f"{suite.url('accounts')}/setup", data={
            "token": form_field(page.text, "token"), "csrf_token": form_field(page.text, "csrf_token"),
            "first_name": "Mia", "last_name": "Holt", "password": PASSWORD, "password_repeat": PASSWORD})
        assert created.status_code == 303
        assert browser.get(f"{suite.url('entitlements')}/library").status_code == 200
        log_out(browser, suite)
        assert log_in(browser, suite, email, PASSWORD).status_code == 303  # the first login with a password

        def seen():
            view = accounts.get(f"/admin/customers/{customer['id']}").json()
            return view if view["last_activity"]["login"] and len(view["account_emails"]) >= 2 else None

        view = eventually(seen, timeout=60)
        assert view["activated"] is True and view["last_activity_at"] is not None
        assert {(e["template"], e["relay_accepted"]) for e in view["account_emails"]} == {("account_setup", True)}

        # Once set up, a resend is a login link (and its code).
        assert accounts.post(f"/admin/customers/{customer['id']}/resend-setup-link").json()["sent"] == "login_link"
        login_email = smtp_inbox.wait_for(lambda m: m["To"] == email and m["Subject"] == "Your login link", timeout=60)
        assert "because you had trouble logging in" in login_email.get_body(preferencelist=("plain",)).get_content()
        assert accounts.get("/admin/customers/cus_unknown").status_code == 404


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_a_buyer_is_not_sent_the_sellers_welcome_email(suite, store, smtp_inbox):
    from tests.e2e.test_account_setup import buy, setup_email

    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    _, purchase_id, _ = buy(suite, store, email, httpx.Client(timeout=10))
    message, _ = setup_email(smtp_inbox, purchase_id)
    assert message["Subject"] == "Set up your account"
    assert not [m for m in smtp_inbox.messages if m["To"] == email and m["Subject"].startswith("Welcome!")]
    assert csrf_token(httpx.Client(timeout=10), suite)
