"""Logging in without a password, resetting it, changing the login email, sessions that end, and the
throttles and CSRF checks in front of them: accounts' own pages and use cases on a migrated SQLite
database, the events they publish read from the outbox."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, select

from postsale.accounts.adapters.tables import Customer, LoginChallenge, LoginSession
from postsale.accounts.domain import throttle
from postsale.accounts.domain.passwords import hash_password
from postsale.contracts import (CustomerEmailChanged, EmailChangeRequested, LoginLinkIssued, PasswordResetRequested,
                                SessionEnded, encode)
from postsale.runtime.accounts_feed import AccountsFeed, CurrentTheme
from postsale.runtime.auth import SESSION_COOKIE
from test_accounts_setup import ACCOUNTS, LIBRARY, PASSWORD, Accounts

pytestmark = pytest.mark.unit


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    return Accounts(tmp_path, monkeypatch)


def customer(accounts: Accounts, email: str, *, password: str | None = PASSWORD) -> Customer:
    with Session(accounts.engine) as session:
        row = Customer(id=f"cus_{uuid.uuid4().hex[:12]}", email=email, first_name="Ann", last_name="Lee",
                       password_hash=hash_password(password) if password else None,
                       activated_at=datetime.now(timezone.utc) if password else None)
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def of_type(accounts: Accounts, kind):
    return [e for e in accounts.published() if isinstance(e, kind)]


def path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def logged_in(accounts: Accounts, email: str, password: str = PASSWORD, **headers):
    browser = accounts.browser()
    response = browser.post("/login", data={"email": email, "password": password}, headers=headers)
    assert response.status_code == 303, response.text
    return browser


def field(page, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page.text).group(1)


# --- 1. a login link and a code ----------------------------------------------------------------


def test_a_login_link_opened_by_a_mail_scanner_still_signs_the_customer_in(accounts):
    customer(accounts, "ann@example.com")
    asking = accounts.browser()
    sent = asking.post("/login/link", data={"email": "Ann@Example.com"})
    assert sent.status_code == 200 and "Check your email" in sent.text
    [issued] = of_type(accounts, LoginLinkIssued)
    assert issued.email == "ann@example.com" and re.fullmatch(r"\d{6}", issued.code)
    assert issued.url.startswith(f"{ACCOUNTS}/login/link?token=")
    assert issued.expires_at - issued.issued_at == timedelta(minutes=15)

    scanner = accounts.browser()
    for _ in range(3):  # Outlook Safe Links and friends open it, maybe several times
        page = scanner.get(path(issued.url))
        assert page.status_code == 200 and "ann@example.com" in page.text and 'action="/login/link/confirm"' in page.text
        assert not scanner.cookies.get(SESSION_COOKIE)
    with Session(accounts.engine) as session:
        assert session.exec(select(LoginChallenge)).one().used_at is None

    reader = accounts.browser()
    page = reader.get(path(issued.url))
    signed_in = reader.post("/login/link/confirm", data={"token": field(page, "token"), "csrf_token": field(page, "csrf_token")})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == LIBRARY
    assert reader.cookies.get(SESSION_COOKIE)

    again = accounts.browser()
    assert again.get(path(issued.url)).status_code == 410
    replayed = again.post("/login/link/confirm", data={"token": field(page, "token")})
    assert replayed.status_code == 410 and "used already" in replayed.text and not again.cookies.get(SESSION_COOKIE)


def test_the_code_from_the_same_email_signs_in_once(accounts):
    customer(accounts, "bo@example.com")
    browser = accounts.browser()
    browser.post("/login/link", data={"email": "bo@example.com"})
    [issued] = of_type(accounts, LoginLinkIssued)
    wrong = "000000" if issued.code != "000000" else "111111"
    refused = browser.post("/login/code", data={"email": "bo@example.com", "code": wrong})
    assert refused.status_code == 401 and "not right" in refused.text
    signed_in = browser.post("/login/code", data={"email": "bo@example.com", "code": f"{issued.code[:3]} {issued.code[3:]}"})
    assert signed_in.status_code == 303 and browser.cookies.get(SESSION_COOKIE)
    assert accounts.browser().post("/login/code", data={"email": "bo@example.com", "code": issued.code}).status_code == 401
    # The link of the same email is used up with its code.
    assert accounts.browser().get(path(issued.url)).status_code == 410


def test_a_code_takes_five_wrong_tries_then_is_used_up(accounts):
    customer(accounts, "cy@example.com")
    accounts.browser().post("/login/link", data={"email": "cy@example.com"})
    [issued] = of_type(accounts, LoginLinkIssued)
    wrong = f"{(int(issued.code) + 1) % 1_000_000:06d}"
    for attempt in range(5):
        assert accounts.browser().post("/login/code", data={"email": "cy@example.com", "code": wrong},
                                       headers={"X-Attempt": str(attempt)}).status_code == 401
    late = accounts.browser().post("/login/code", data={"email": "cy@example.com", "code": issued.code})
    assert late.status_code in (401, 429) and not late.cookies.get(SESSION_COOKIE)


def test_asking_again_ends_the_earlier_link_and_code(accounts):
    customer(accounts, "dee@example.com")
    accounts.browser().post("/login/link", data={"email": "dee@example.com"})
    accounts.browser().post("/login/link", data={"email": "dee@example.com"})
    first, second = of_type(accounts, LoginLinkIssued)
    assert accounts.browser().get(path(first.url)).status_code == 410
    assert accounts.browser().get(path(second.url)).status_code == 200


def test_an_email_without_an_account_gets_the_same_answer_and_nothing_is_sent(accounts):
    customer(accounts, "eve@example.com")
    known = accounts.browser().post("/login/link", data={"email": "eve@example.com"})
    unknown = accounts.browser().post("/login/link", data={"email": "nobody@example.com"})
    strip = lambda page, email: page.text.replace(email, "EMAIL").replace(email.replace("@", "%40"), "EMAIL")  # noqa: E731
    assert (known.status_code, unknown.status_code) == (200, 200)
    assert re.sub(r'value="[^"]{40,}"', "", strip(known, "eve@example.com")) == \
        re.sub(r'value="[^"]{40,}"', "", strip(unknown, "nobody@example.com"))
    assert [e.email for e in of_type(accounts, LoginLinkIssued)] == ["eve@example.com"]
    reset_known = accounts.browser().post("/password/reset", data={"email": "eve@example.com"})
    reset_unknown = accounts.browser().post("/password/reset", data={"email": "nobody@example.com"})
    assert reset_known.status_code == reset_unknown.status_code == 200
    assert [e.email for e in of_type(accounts, PasswordResetRequested)] == ["eve@example.com"]


def test_a_login_link_leads_back_to_the_page_that_asked_for_the_login(accounts):
    customer(accounts, "fay@example.com")
    lesson = f"{LIBRARY}/lessons/l1"
    accounts.browser().post("/login/link", data={"email": "fay@example.com", "next": "https://evil.example/"})
    accounts.browser().post("/login/link", data={"email": "fay@example.com", "next": lesson})
    evil, good = of_type(accounts, LoginLinkIssued)  # asking again ended the first one
    browser = accounts.browser()
    page = browser.get(path(good.url))
    signed_in = browser.post("/login/link/confirm", data={"token": field(page, "token"), "next": field(page, "next")})
    assert signed_in.headers["location"] == lesson
    assert "evil.example" not in evil.url


# --- throttling --------------------------------------------------------------------------------


def test_wrong_passwords_are_throttled_per_account_with_growing_delays(accounts):
    customer(accounts, "gus@example.com")
    free = throttle.FAILED_LOGIN_PER_ACCOUNT.free
    for attempt in range(free + 1):
        wrong = accounts.browser().post("/login", data={"email": "gus@example.com", "password": f"wrong {attempt}"},
                                        headers={"X-Forwarded-For": f"10.0.0.{attempt}"})
        assert wrong.status_code == 401
    right = accounts.browser().post("/login", data={"email": "gus@example.com", "password": PASSWORD})
    assert right.status_code == 429 and "Too many attempts" in right.text and not right.cookies.get(SESSION_COOKIE)
    assert int(right.headers["Retry-After"]) >= 1
    # An email without an account is throttled the same way: the answers tell nothing.
    for attempt in range(free + 1):
        accounts.browser().post("/login", data={"email": "nobody@example.com", "password": "wrong"})
    assert accounts.browser().post("/login", data={"email": "nobody@example.com", "password": "x"}).status_code == 429


def test_the_delays_double_with_each_attempt_beyond_the_free_ones():
    policy = throttle.FAILED_LOGIN_PER_ACCOUNT
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    state, delays = None, []
    for _ in range(policy.free + 5):
        state = throttle.after_attempt(policy, state, now)
        delays.append(throttle.wait(state, now))
    assert delays[:policy.free] == [None] * policy.free
    assert [d.total_seconds() for d in delays[policy.free:]] == [2, 4, 8, 16, 32]
    assert throttle.wait(state, now + timedelta(seconds=33)) is None
    later = throttle.after_attempt(policy, state, now + policy.window + timedelta(seconds=1))
    assert later.hits == 1 and later.blocked_until is None  # a new window starts afresh
    assert policy.delay_after(10_000) == policy.max_delay


def test_login_links_asked_for_too_often_are_refused_for_a_while(accounts):
    customer(accounts, "hal@example.com")
    answers = [accounts.browser().post("/login/link", data={"email": "hal@example.com"}).status_code for _ in range(6)]
    assert answers[:throttle.EMAILS_PER_ACCOUNT.free + 1] == [200] * (throttle.EMAILS_PER_ACCOUNT.free + 1)
    assert answers[-1] == 429
    assert len(of_type(accounts, LoginLinkIssued)) == throttle.EMAILS_PER_ACCOUNT.free + 1


def test_wrong_passwords_from_one_address_are_throttled_across_emails(accounts):
    """Every request of a TestClient comes from one address (`testclient`); the end-to-end tests
    vary it through a trusted proxy's `X-Forwarded-For`."""
    customer(accounts, "ida@example.com")
    for attempt in range(throttle.FAILED_LOGIN_PER_ADDRESS.free + 1):
        accounts.browser().post("/login", data={"email": f"guess{attempt}@example.com", "password": "wrong"})
    refused = accounts.browser().post("/login", data={"email": "ida@example.com", "password": PASSWORD})
    assert refused.status_code == 429 and not refused.cookies.get(SESSION_COOKIE)


# --- 2. password reset, change of email, session rotation -------------------------------------


def test_a_password_reset_by_link_ends_every_session_and_signs_this_browser_in(accounts):
    customer(accounts, "jo@example.com")
    laptop = logged_in(accounts, "jo@example.com")
    accounts.browser().post("/password/reset", data={"email": "jo@example.com"})
    [reset] = of_type(accounts, PasswordResetRequested)
    assert reset.url.startswith(f"{ACCOUNTS}/password/reset/confirm?token=") and re.fullmatch(r"\d{6}", reset.code)

    phone = accounts.browser()
    page = phone.get(path(reset.url))  # a scanner's GET uses nothing up either
    assert page.status_code == 200 and "jo@example.com" in page.text and 'name="password"' in page.text
    token = field(page, "token")
    common = phone.post("/password/reset/confirm", data={"token": token, "password": "password123",
                                                         "password_repeat": "password123"})
    assert common.status_code == 422 and "most common" in common.text
    done = phone.post("/password/reset/confirm", data={"token": token, "password": "a new passphrase",
                                                       "password_repeat": "a new passphrase"})
    assert done.status_code == 303 and phone.cookies.get(SESSION_COOKIE)
    assert phone.post("/password/reset/confirm", data={"token": token, "password": "another passphrase",
                                                       "password_repeat": "another passphrase"}).status_code == 410

    [ended] = of_type(accounts, SessionEnded)
    assert ended.reason == "password_changed"
    assert laptop.get("/account").status_code == 303  # the laptop's session ended with the old password
    assert phone.get("/account").status_code == 200
    assert accounts.browser().post("/login", data={"email": "jo@example.com", "password": PASSWORD}).status_code == 401
    logged_in(accounts, "jo@example.com", "a new passphrase")


def test_a_password_reset_by_code_sets_up_an_account_never_set_up(accounts):
    customer(accounts, "kim@example.com", password=None)
    accounts.browser().post("/password/reset", data={"email": "kim@example.com"})
    [reset] = of_type(accounts, PasswordResetRequested)
    browser = accounts.browser()
    done = browser.post("/password/reset/confirm", data={"email": "kim@example.com", "code": reset.code,
                                                         "password": "a new passphrase",
                                                         "password_repeat": "a new passphrase"})
    assert done.status_code == 303
    assert accounts.customer("kim@example.com").activated_at is not None
    logged_in(accounts, "kim@example.com", "a new passphrase")


def test_a_new_login_email_is_confirmed_from_the_new_address(accounts):
    customer(accounts, "lou@example.com")
    browser = logged_in(accounts, "lou@example.com")
    other_device = logged_in(accounts, "lou@example.com")
    wrong = browser.post("/account/email", data={"new_email": "lou@new.example", "current_password": "nope"})
    assert wrong.status_code == 422 and "current password" in wrong.text
    asked = browser.post("/account/email", data={"new_email": "Lou@New.example", "current_password": PASSWORD})
    assert asked.status_code == 200 and "lou@new.example" in asked.text
    [change] = of_type(accounts, EmailChangeRequested)
    assert (change.email, change.new_email) == ("lou@example.com", "lou@new.example")
    assert accounts.customer("lou@example.com")  # unchanged until confirmed

    mailbox = accounts.browser()
    page = mailbox.get(path(change.url))
    assert page.status_code == 200 and "lou@new.example" in page.text
    assert accounts.customer("lou@example.com")  # a GET changes nothing
    confirmed = mailbox.post("/account/email/confirm", data={"token": field(page, "token")})
    assert confirmed.status_code == 303 and mailbox.cookies.get(SESSION_COOKIE)
    [changed] = of_type(accounts, CustomerEmailChanged)
    assert (changed.old_email, changed.new_email) == ("lou@example.com", "lou@new.example")
    assert {e.reason for e in of_type(accounts, SessionEnded)} == {"email_changed"}
    assert other_device.get("/account").status_code == 303
    logged_in(accounts, "lou@new.example")
    assert accounts.browser().post("/login", data={"email": "lou@example.com", "password": PASSWORD}).status_code == 401


def test_each_login_gets_a_new_session_and_ends_the_one_the_browser_had(accounts):
    customer(accounts, "max@example.com")
    browser = logged_in(accounts, "max@example.com")
    first = browser.cookies.get(SESSION_COOKIE)
    browser.post("/login", data={"email": "max@example.com", "password": PASSWORD})
    assert browser.cookies.get(SESSION_COOKIE) != first
    [replaced] = of_type(accounts, SessionEnded)
    assert replaced.reason == "replaced"
    with Session(accounts.engine) as session:
        sessions = session.exec(select(LoginSession).order_by(LoginSession.created_at)).all()
        assert [s.ended_at is not None for s in sessions] == [True, False]


def test_a_changed_password_ends_the_other_sessions(accounts):
    customer(accounts, "ned@example.com")
    browser = logged_in(accounts, "ned@example.com")
    other = logged_in(accounts, "ned@example.com")
    changed = browser.post("/account/password", data={"current_password": PASSWORD, "password": "a new passphrase",
                                                      "password_repeat": "a new passphrase"})
    assert changed.status_code == 303 and browser.get("/account").status_code == 200
    assert other.get("/account").status_code == 303


# --- 3. logout everywhere ------------------------------------------------------------------------


def test_a_logged_out_token_is_refused_by_every_service_that_read_the_event(accounts):
    customer(accounts, "ola@example.com")
    browser = logged_in(accounts, "ola@example.com")
    copied = browser.cookies.get(SESSION_COOKIE)
    page = browser.get("/account")
    out = browser.post("/logout", data={"csrf_token": field(page, "csrf_token")})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    [ended] = of_type(accounts, SessionEnded)
    assert ended.reason == "logout" and ended.customer_id == accounts.customer("ola@example.com").id

    thief = accounts.browser()
    thief.cookies.set(SESSION_COOKIE, copied)
    assert thief.get("/account").status_code == 303  # accounts reads its own rows at once

    # Another service: the token still verifies until its feed reads the event, then never again.
    verifier = accounts.app.state.session_verifier
    assert verifier.verify(copied) is not None
    feed = AccountsFeed("unused:9092", revoked=accounts.app.state.revoked_sessions, theme=CurrentTheme())
    headers, value = encode(ended, source="/tests")
    feed.handle(list(headers.items()), value)
    assert verifier.verify(copied) is None
    accounts.app.state.revoked_sessions.prune(ended.expires_at + timedelta(seconds=1))
    assert len(accounts.app.state.revoked_sessions) == 0  # forgotten once the token expired anyway


# --- 4. CSRF ---------------------------------------------------------------------------------


def test_forms_without_this_browsers_token_or_from_another_site_are_refused(accounts):
    customer(accounts, "pia@example.com")
    browser = accounts.browser()
    form = {"email": "pia@example.com", "password": PASSWORD}
    missing = browser.post("/login", data=form, csrf=False)
    assert missing.status_code == 403 and "did not come from this site" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    other_browsers = accounts.browser().csrf_token()
    assert browser.post("/login", data={**form, "csrf_token": other_browsers}).status_code == 403
    forged = browser.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert browser.post("/login", data=form, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert not browser.cookies.get(SESSION_COOKIE)
    assert browser.post("/login", data=form, headers={"Origin": ACCOUNTS}).status_code == 303

    # Logout too: a token bound to the session, or a form from one of our pages (the library's).
    page = browser.get("/account")
    assert browser.post("/logout", data={}, csrf=False).status_code == 403
    assert browser.post("/logout", data={}, csrf=False, headers={"Origin": "https://evil.example"}).status_code == 403
    assert browser.get("/account").status_code == 200
    from_library = browser.post("/logout", data={}, csrf=False, headers={"Origin": LIBRARY.removesuffix("/library")})
    assert from_library.status_code == 303 and browser.get("/account").status_code == 303
    assert field(page, "csrf_token") != browser.csrf_token()  # the token was bound to the ended session


def test_the_library_logout_of_entitlements_without_a_token_needs_our_origin(accounts):
    customer(accounts, "quinn@example.com")
    browser = logged_in(accounts, "quinn@example.com")
    assert browser.post("/logout", data={}, csrf=False, headers={"Referer": "https://evil.example/x"}).status_code == 403
    assert browser.post("/logout", data={}, csrf=False,
                        headers={"Referer": f"{LIBRARY}?purchase=1"}).status_code == 303
