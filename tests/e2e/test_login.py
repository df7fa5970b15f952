"""Logging in as a customer who cannot remember the password would, across the four services on the
real broker: a login link that a mail scanner opened first, the code from the same email, a password
reset, a logout that entitlements honours within seconds, throttled guessing and forged forms."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from postsale.runtime.auth import SESSION_COOKIE
from tests.e2e.test_account_setup import buy
from tests.support import csrf_token, eventually, form_field, log_in, log_out, set_up_account

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
POSTGRESQL = pytest.mark.parametrize("suite", ["postgresql"], indirect=True)


def customer_with_account(suite, store, name: str) -> tuple[str, httpx.Client]:
    """A buyer who set up the account (and is logged in in the returned browser)."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    setup_url, _, _ = buy(suite, store, email, browser)
    assert set_up_account(browser, suite, setup_url, password=PASSWORD).status_code == 303
    return email, browser


def client(address: str | None = None) -> httpx.Client:
    """A browser; `address` stands for its client address (the suite's uvicorn trusts 127.0.0.1 as a proxy)."""
    return httpx.Client(timeout=10, headers={"X-Forwarded-For": address} if address else {})


def unique_address() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}"


def emailed(smtp_inbox, email: str, subject: str, after: float):
    message = smtp_inbox.wait_for(lambda m: m["To"] == email and m["Subject"] == subject
                                  and float(m.get("X-Test-Received", time.time())) >= after, timeout=60)
    return message.get_body(preferencelist=("plain",)).get_content()


def library(suite, browser: httpx.Client) -> httpx.Response:
    return browser.get(f"{suite.url('entitlements')}/library")


@POSTGRESQL
def test_a_login_link_opened_by_a_mail_scanner_still_logs_the_customer_in(suite, store, smtp_inbox):
    email, _ = customer_with_account(suite, store, "link")
    accounts = suite.url("accounts")
    browser = client(unique_address())
    asked = browser.post(f"{accounts}/login/link", data={"email": email, "csrf_token": csrf_token(browser, suite)})
    assert asked.status_code == 200 and "Check your email" in asked.text
    text = emailed(smtp_inbox, email, "Your login link", 0)
    link = re.search(r"(http\S+/login/link\?token=\S+)", text).group(1)
    assert urlsplit(link).netloc == urlsplit(accounts).netloc

    scanner = httpx.Client(timeout=10)  # Safe Links, a virus scanner: GETs, follows, reads
    for _ in range(2):
        scanned = scanner.get(link)
        assert scanned.status_code == 200 and email in scanned.text and SESSION_COOKIE not in scanner.cookies

    page = browser.get(link)
    assert page.status_code == 200 and 'action="/login/link/confirm"' in page.text
    signed_in = browser.post(f"{accounts}/login/link/confirm", data={
        "token": form_field(page.text, "token"), "csrf_token": form_field(page.text, "csrf_token")})
    assert signed_in.status_code == 303 and SESSION_COOKIE in browser.cookies
    shelf = eventually(lambda: (p := library(suite, browser)).status_code == 200 and store.product_name in p.text and p)
    assert email in shelf.text
    assert httpx.get(link).status_code == 410  # used


@POSTGRESQL
def test_the_code_in_the_same_email_logs_in_instead_of_the_link(suite, store, smtp_inbox):
    email, _ = customer_with_account(suite, store, "code")
    browser = client(unique_address())
    accounts = suite.url("accounts")
    browser.post(f"{accounts}/login/link", data={"email": email, "csrf_token": csrf_token(browser, suite)})
    code = re.search(r"code on the login page: (\d{6})", emailed(smtp_inbox, email, "Your login link", 0)).group(1)
    wrong = browser.post(f"{accounts}/login/code", data={
        "email": email, "code": "000000" if code != "000000" else "111111", "csrf_token": csrf_token(browser, suite)})
    assert wrong.status_code == 401 and "not right" in wrong.text
    signed_in = browser.post(f"{accounts}/login/code", data={"email": email, "code": code,
                                                            "csrf_token": csrf_token(browser, suite)})
    assert signed_in.status_code == 303
    eventually(lambda: store.product_name in library(suite, browser).text)
    again = client(unique_address())
    assert again.post(f"{accounts}/login/code", data={"email": email, "code": code,
                                                      "csrf_token": csrf_token(again, suite)}).status_code == 401


@POSTGRESQL
def test_a_forgotten_password_is_reset_from_the_email_and_old_sessions_end(suite, store, smtp_inbox):
    email, old_browser = customer_with_account(suite, store, "reset")
    eventually(lambda: store.product_name in library(suite, old_browser).text)
    accounts = suite.url("accounts")
    browser = client(unique_address())
    browser.post(f"{accounts}/password/reset", data={"email": email, "csrf_token": csrf_token(browser, suite)})
    link = re.search(r"(http\S+/password/reset/confirm\?token=\S+)",
                     emailed(smtp_inbox, email, "Reset your password", 0)).group(1)
    assert httpx.get(link).status_code == 200  # a scanner's look uses nothing up
    page = browser.get(link)
    done = browser.post(f"{accounts}/password/reset/confirm", data={
        "token": form_field(page.text, "token"), "csrf_token": form_field(page.text, "csrf_token"),
        "password": "a brand new passphrase", "password_repeat": "a brand new passphrase"})
    assert done.status_code == 303
    eventually(lambda: store.product_name in library(suite, browser).text)
    # The session from before the reset is refused by entitlements too, and the old password is gone.
    eventually(lambda: library(suite, old_browser).status_code == 303, timeout=5)
    assert log_in(client(unique_address()), suite, email, PASSWORD).status_code == 401
    assert log_in(client(unique_address()), suite, email, "a brand new passphrase").status_code == 303


@POSTGRESQL
def test_logging_out_is_honoured_by_entitlements_within_five_seconds(suite, store):
    email, browser = customer_with_account(suite, store, "out")
    eventually(lambda: store.product_name in library(suite, browser).text)
    copy = httpx.Client(timeout=10)
    copy.cookies.set(SESSION_COOKIE, browser.cookies[SESSION_COOKIE])
    assert library(suite, copy).status_code == 200

    assert log_out(browser, suite).status_code == 303
    started = time.monotonic()
    to_login = eventually(lambda: (r := library(suite, copy)).status_code == 303 and r, timeout=5, interval=0.1)
    assert to_login.headers["location"].startswith(f"{suite.url('accounts')}/login?next=")
    print(f"entitlements refused the logged-out token after {time.monotonic() - started:.2f}s")
    assert copy.get(f"{suite.url('accounts')}/account").status_code == 303  # accounts at once


@POSTGRESQL
def test_guessing_passwords_is_throttled_without_telling_which_emails_have_accounts(suite, store):
    email, _ = customer_with_account(suite, store, "guess")
    stranger = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    for target in (email, stranger):  # the same answers whether an account has the email or not
        answers = [log_in(client(unique_address()), suite, target, f"wrong guess {n}").status_code for n in range(6)]
        assert answers == [401] * 6, (target, answers)
        # A new address each time: the account's own limit holds, even for the right password.
        refused = log_in(client(unique_address()), suite, target, PASSWORD)
        assert refused.status_code == 429 and "Too many attempts" in refused.text
        first_wait = int(refused.headers["retry-after"])
        assert first_wait >= 1
        # After the wait one more guess is heard, and the next wait is longer.
        time.sleep(first_wait + 0.2)
        assert log_in(client(unique_address()), suite, target, "wrong again").status_code == 401
        longer = log_in(client(unique_address()), suite, target, PASSWORD)
        assert longer.status_code == 429 and int(longer.headers["retry-after"]) > first_wait

    # One address guessing across many emails is held back too.
    address = unique_address()
    answers = [log_in(client(address), suite, f"g{n}-{uuid.uuid4().hex[:6]}@example.com", "x" * 8).status_code
               for n in range(32)]
    assert 429 in answers and answers[0] == 401


@POSTGRESQL
def test_forged_forms_are_refused(suite, store):
    email, _ = customer_with_account(suite, store, "csrf")
    accounts = suite.url("accounts")
    browser = client(unique_address())
    token = csrf_token(browser, suite)
    form = {"email": email, "password": PASSWORD}
    missing = browser.post(f"{accounts}/login", data=form)
    assert missing.status_code == 403 and missing.headers["content-type"].startswith("text/html")
    assert "did not come from this site" in missing.text
    from_evil = browser.post(f"{accounts}/login", data={**form, "csrf_token": token},
                             headers={"Origin": "https://evil.example"})
    assert from_evil.status_code == 403
    other_browser = client(unique_address())
    assert other_browser.post(f"{accounts}/login", data={**form, "csrf_token": token}).status_code == 403
    assert SESSION_COOKIE not in browser.cookies and SESSION_COOKIE not in other_browser.cookies
    assert browser.post(f"{accounts}/login", data={**form, "csrf_token": token}).status_code == 303

    # Logging out from another site is refused; from the library's button (our origin) it is not.
    assert browser.post(f"{accounts}/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    assert browser.post(f"{accounts}/logout").status_code == 403
    eventually(lambda: library(suite, browser).status_code == 200)
    out = browser.post(f"{accounts}/logout", headers={"Origin": suite.url("entitlements")})
    assert out.status_code == 303


@POSTGRESQL
def test_every_page_carries_the_security_headers(suite, store):
    for url in (f"{suite.url('accounts')}/login", f"{suite.url('accounts')}/login/link", store.checkout_url,
                f"{suite.url('entitlements')}/library", f"{suite.url('notifications')}/healthz"):
        headers = httpx.get(url).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], url
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    login = httpx.get(f"{suite.url('accounts')}/login")
    assert "script-src 'none'" in login.headers["content-security-policy"]
    cookie = login.headers["set-cookie"]
    assert "postsale_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
