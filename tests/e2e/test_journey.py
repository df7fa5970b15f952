"""A new customer buys, creates the account, lands in the library and gets the email."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.support import csrf_token, eventually, log_in, log_out, start_checkout

pytestmark = pytest.mark.e2e


def test_new_customer_buys_sets_up_account_and_sees_product(suite, store, smtp_inbox):
    email = f"ann-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)

    offer_page = browser.get(store.checkout_url)
    assert offer_page.status_code == 200
    assert "Email address" in offer_page.text

    bad_email = browser.post(f"{suite.url('checkout')}/offers/{store.offer_id}/checkout", data={"email": "not-an-email"})
    assert bad_email.status_code == 422
    assert "Enter a valid email address." in bad_email.text

    started = browser.post(f"{suite.url('checkout')}/offers/{store.offer_id}/checkout", data={"email": email})
    assert started.status_code == 303
    payment_url = suite.url("checkout") + started.headers["location"]
    payment_page = browser.get(payment_url)
    assert "49.00 EUR" in payment_page.text

    declined = browser.post(f"{payment_url}/pay", data={"card_number": "4000 0000 0000 0002"})
    assert declined.status_code == 402
    assert "Your card was declined." in declined.text

    paid = browser.post(f"{payment_url}/pay", data={"card_number": "4242 4242 4242 4242"})
    assert paid.status_code == 303
    setup_url = paid.headers["location"]
    assert setup_url.startswith(f"{suite.url('accounts')}/setup?")

    # The setup page waits (refreshing) until the purchase has reached accounts.
    setup_page = eventually(lambda: (page := browser.get(setup_url)).status_code == 200
                            and "Create your account" in page.text and page)
    assert email in setup_page.text
    token = re.search(r'name="token" value="([^"]+)"', setup_page.text).group(1)

    mismatch = browser.post(f"{suite.url('accounts')}/setup", data={
        "token": token, "first_name": "Ann", "last_name": "Lee", "csrf_token": csrf_token(browser, suite),
        "password": "correct horse battery", "password_repeat": "something else"})
    assert mismatch.status_code == 422
    assert "The two passwords are not the same." in mismatch.text

    created = browser.post(f"{suite.url('accounts')}/setup", data={
        "token": token, "first_name": "Ann", "last_name": "Lee", "csrf_token": csrf_token(browser, suite),
        "password": "correct horse battery", "password_repeat": "correct horse battery"})
    assert created.status_code == 303
    assert created.headers["location"].startswith(f"{suite.url('entitlements')}/library?purchase=pur_")

    library = eventually(lambda: (page := browser.get(created.headers["location"])).status_code == 200
                         and store.product_name in page.text and page)
    assert email in library.text

    confirmation = smtp_inbox.wait_for(lambda m: m["To"] == email and m["Subject"].startswith("Your purchase"))
    assert confirmation["Subject"] == f"Your purchase: {store.product_name} offer"
    html = confirmation.get_body(preferencelist=("html",)).get_content()
    assert f'href="{suite.url("entitlements")}/library"' in html
    assert "Log in to your library" in html

    # The setup link is single-use.
    reused = browser.get(setup_url)
    assert reused.status_code == 410

    logged_out = log_out(browser, suite)
    assert logged_out.status_code == 303
    to_login = browser.get(f"{suite.url('entitlements')}/library")
    assert to_login.status_code == 303
    login_url = to_login.headers["location"]
    assert login_url.startswith(f"{suite.url('accounts')}/login?next=")

    wrong = log_in(browser, suite, email, "wrong password")
    assert wrong.status_code == 401
    assert "do not match" in wrong.text

    login_page = browser.get(login_url)
    next_url = re.search(r'name="next" value="([^"]+)"', login_page.text).group(1)
    logged_in = log_in(browser, suite, email.upper(), "correct horse battery", next=next_url)
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == f"{suite.url('entitlements')}/library"
    assert store.product_name in browser.get(logged_in.headers["location"]).text


def test_returning_customer_logs_in_before_paying(suite, store):
    """A buyer whose email has an account is asked to log in, then comes back to the same checkout."""
    email = f"bo-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    paid = browser.post(f"{start_checkout(browser, suite, store.offer_id, email)}/pay",
                        data={"card_number": "4242424242424242"})
    setup_url = paid.headers["location"]
    page = eventually(lambda: (p := browser.get(setup_url)) and "Create your account" in p.text and p)
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    browser.post(f"{suite.url('accounts')}/setup", data={"token": token, "first_name": "Bo", "last_name": "Ek",
                                                        "csrf_token": csrf_token(browser, suite),
                                                        "password": "pass-word-1", "password_repeat": "pass-word-1"})
    log_out(browser, suite)

    second = suite.create_store(f"Second {uuid.uuid4().hex[:6]}", "Second offer")
    checkout_url = start_checkout(browser, suite, second.offer_id, email)
    # Checkout learns about the new account through accounts.customers.v1.
    to_login = eventually(lambda: (r := browser.get(checkout_url)).status_code == 303
                          and "/login" in r.headers["location"] and r)
    assert to_login.headers["location"].startswith(f"{suite.url('accounts')}/login?next=")
    logged_in = log_in(browser, suite, email, "pass-word-1", next=checkout_url)
    assert logged_in.headers["location"] == checkout_url
    paid_again = browser.post(f"{checkout_url}/pay", data={"card_number": "4242424242424242"})
    assert paid_again.status_code == 303
    assert paid_again.headers["location"].startswith(f"{suite.url('entitlements')}/library?purchase=pur_")
