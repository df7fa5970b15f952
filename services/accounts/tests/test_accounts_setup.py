"""Account setup as accounts' own HTTP side and consumer do it, on a migrated SQLite database: the
link by email, the browser token of an email that bought before, the password chosen at
checkout, where the customer lands, and the limits of every form."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from fastapi import FastAPI
from sqlmodel import Session, select

from postsale.accounts import handlers
from postsale.accounts.adapters.signing import SessionSigner, generate_private_key_pem
from postsale.accounts.adapters.tables import Customer, PendingActivation, SetupToken
from postsale.accounts.config import MIGRATIONS_DIR
from postsale.accounts.domain.passwords import hash_password
from postsale.accounts.entrypoints import api, login
from postsale.accounts.entrypoints.app import add_form_limits
from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS
from postsale.contracts import (AccountActivated, AccountSetupLinkIssued, CustomerRegistered, Money,
                                PurchaseCompleted, PurchasedProduct, decode)
from postsale.runtime.auth import AUDIENCE, ISSUER, SESSION_COOKIE, CustomerSession, RevokedSessions
from postsale.runtime.csrf import add_csrf_cookie
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.messaging.outbox import OutboxMessage
from postsale.runtime.migrations import migrate
from postsale.runtime.passwords import MAX_LENGTH, MIN_LENGTH, password_problem
from postsale.runtime.settings import PublicUrls
from postsale_local.staff_tokens import FormBrowser

pytestmark = pytest.mark.unit

ACCOUNTS = "http://accounts.test"
LIBRARY = "http://entitlements.test/library"
CONSUMER = SUBSCRIPTIONS[0].consumer_name
PASSWORD = "correct horse battery"


class LocalVerifier:
    """The other services verify sessions against accounts' published keys; here, the key itself."""

    def __init__(self, signer: SessionSigner, revoked: RevokedSessions | None = None) -> None:
        self.key = jwt.PyJWK(signer.jwks()["keys"][0]).key
        self.revoked = revoked

    def verify(self, token: str | None) -> CustomerSession | None:
        try:
            claims = jwt.decode(token or "", self.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
        except jwt.PyJWTError:
            return None
        if self.revoked is not None and self.revoked.is_ended(claims["sid"]):
            return None
        return CustomerSession(customer_id=claims["sub"], email=claims["email"], session_id=claims["sid"])


class Browser(FormBrowser):
    """A browser on accounts' pages: each form it posts carries the CSRF token its pages carry."""

    csrf_page = "/login/link"


class Accounts:
    """Accounts' routes on a migrated database, and the consumer's use case, without a broker."""

    def __init__(self, tmp_path, monkeypatch) -> None:
        monkeypatch.setenv("POSTSALE_ACCOUNTS_URL", ACCOUNTS)
        monkeypatch.setenv("POSTSALE_COOKIE_SECURE", "false")  # http://accounts.test is not loopback
        monkeypatch.setenv("POSTSALE_ENTITLEMENTS_URL", LIBRARY.removesuffix("/library"))
        self.engine = make_engine(f"sqlite:///{tmp_path / 'accounts.db'}")
        migrate(self.engine, MIGRATIONS_DIR)
        app = FastAPI()
        app.state.engine = self.engine
        app.state.urls = PublicUrls()
        app.state.signer = SessionSigner(generate_private_key_pem())
        app.state.session_hours = 1
        app.state.revoked_sessions = RevokedSessions()
        app.state.session_verifier = LocalVerifier(app.state.signer, app.state.revoked_sessions)
        app.include_router(api.router)
        app.include_router(login.router)
        add_form_limits(app)
        add_csrf_cookie(app)
        self.app = app

    def browser(self) -> Browser:
        return Browser(self.app, base_url=ACCOUNTS, follow_redirects=False)

    def deliver(self, event: PurchaseCompleted, event_id: str | None = None) -> bool:
        return apply_once(self.engine, CONSUMER, handlers.register_buyer, event, event_id or uuid.uuid4().hex)

    def published(self) -> list:
        with Session(self.engine) as session:
            rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
            return [decode(json.loads(row.headers), row.value) for row in rows]

    def links(self) -> list[AccountSetupLinkIssued]:
        return [e for e in self.published() if isinstance(e, AccountSetupLinkIssued)]

    def customer(self, email: str) -> Customer:
        with Session(self.engine) as session:
            return session.exec(select(Customer).where(Customer.email == email)).one()


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    return Accounts(tmp_path, monkeypatch)


def browser_token() -> tuple[str, str]:
    """A token as checkout hands it to the browser, and the hash it publishes."""
    token = secrets.token_hex(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def purchase(email: str, token_sha256: str | None, **fields) -> PurchaseCompleted:
    return PurchaseCompleted(**{
        "purchase_id": f"pur_{uuid.uuid4().hex[:16]}", "customer_id": f"cus_{uuid.uuid4().hex[:16]}",
        "email": email, "offer_id": "offer_1", "offer_name": "Membership",
        "products": [PurchasedProduct(product_id="prod_1", name="Membership", delivery_type="membership")],
        "amount": Money(amount=4900, currency="EUR"), "provider": "sandbox", "provider_payment_id": "sbx_1",
        "completed_at": datetime.now(timezone.utc), "new_customer": True, "account_setup_token_sha256": token_sha256,
        **fields,
    })


def details(token: str, password: str = PASSWORD, **fields) -> dict:
    return {"token": token, "first_name": "Ann", "last_name": "Lee", "password": password,
            "password_repeat": password, **fields}


def link_token(link: AccountSetupLinkIssued) -> str:
    return link.url.rsplit("token=", 1)[1]


def test_a_new_buyer_is_emailed_a_setup_link_once_and_it_sets_up_the_account(accounts):
    _, token_sha256 = browser_token()
    bought = purchase("ann@example.com", token_sha256)
    event_id = uuid.uuid4().hex
    assert accounts.deliver(bought, event_id)
    assert not accounts.deliver(bought, event_id)  # redelivered: the inbox keeps it to one link

    registered, link = accounts.published()
    assert isinstance(registered, CustomerRegistered)
    assert (link.reason, link.email, link.customer_id) == ("welcome", "ann@example.com", bought.customer_id)
    assert link.url.startswith(f"{ACCOUNTS}/setup?purchase={bought.purchase_id}&token=")
    with Session(accounts.engine) as session:
        stored = session.get(SetupToken, hashlib.sha256(link_token(link).encode()).hexdigest())
        assert stored is not None and not stored.email_proof_required  # only its hash is kept
        assert abs(stored.expires_at.replace(tzinfo=timezone.utc) - link.expires_at) < timedelta(seconds=1)

    mail_reader = accounts.browser()
    page = mail_reader.get(link.url.removeprefix(ACCOUNTS))
    assert page.status_code == 200 and "Create your account" in page.text and "ann@example.com" in page.text
    created = mail_reader.post("/setup", data=details(link_token(link)))
    assert created.status_code == 303 and created.headers["location"].startswith(f"{LIBRARY}?purchase=")
    assert mail_reader.cookies.get(SESSION_COOKIE)
    assert accounts.customer("ann@example.com").activated_at is not None

    again = accounts.browser().get(link.url.removeprefix(ACCOUNTS))
    assert again.status_code == 410
    assert "already set up" in again.text and 'href="/login"' in again.text


def test_the_welcome_email_is_not_sent_when_the_seller_turned_it_off(accounts):
    accounts.deliver(purchase("bo@example.com", browser_token()[1], send_account_setup_email=False))
    assert accounts.links() == []


def test_an_upsell_or_order_bump_of_the_same_buyer_sends_no_second_link(accounts):
    token, token_sha256 = browser_token()
    first = purchase("cy@example.com", token_sha256, order_id="ord_1")
    accounts.deliver(first)
    accounts.deliver(purchase("cy@example.com", None, customer_id=first.customer_id, order_id="ord_1"))
    accounts.deliver(purchase("cy@example.com", None, customer_id=first.customer_id, parent_purchase_id=first.purchase_id))
    assert len(accounts.links()) == 1
    assert accounts.browser().post("/setup", data=details(token)).status_code == 303


def test_a_browser_token_never_sets_up_an_email_that_bought_before(accounts):
    """Whoever pays with the email of a customer who has not set up the account must prove the
    email: the second buyer's browser token is refused, the link emailed to the address works."""
    first_token, first_sha256 = browser_token()
    first = purchase("dee@example.com", first_sha256)
    accounts.deliver(first)
    second_token, second_sha256 = browser_token()
    # The seller turned the welcome email off, yet this buyer was told to use the email: it goes.
    second = purchase("dee@example.com", second_sha256, customer_id=first.customer_id, send_account_setup_email=False)
    accounts.deliver(second)

    intruder = accounts.browser()
    page = intruder.get(f"/setup?purchase={second.purchase_id}&token={second_token}")
    assert page.status_code == 200
    assert "already has purchases" in page.text and "dee@example.com" in page.text
    assert 'name="password"' not in page.text
    refused = intruder.post("/setup", data=details(second_token))
    assert refused.status_code == 403 and "already has purchases" in refused.text
    at_checkout = intruder.post("/setup/checkout", data=details(second_token))
    assert at_checkout.status_code == 200 and "already has purchases" in at_checkout.text
    assert not intruder.cookies.get(SESSION_COOKIE)
    assert accounts.customer("dee@example.com").activated_at is None

    link = accounts.links()[-1]
    assert link.url.startswith(f"{ACCOUNTS}/setup?purchase={second.purchase_id}&token=")
    owner = accounts.browser()
    assert owner.post("/setup", data=details(link_token(link))).status_code == 303
    assert accounts.customer("dee@example.com").activated_at is not None
    # Every other token of the customer now says so and leads to login.
    for token in (first_token, second_token):
        used = accounts.browser().get(f"/setup?token={token}")
        assert used.status_code == 410 and "already set up" in used.text


def test_the_customer_lands_on_the_purchase_destination_and_never_on_one_from_the_request(accounts):
    token, token_sha256 = browser_token()
    accounts.deliver(purchase("eve@example.com", token_sha256, after_setup_url="https://seller.example/thanks"))
    browser = accounts.browser()
    created = browser.post("/setup?next=https://evil.example/", data=details(token, next="https://evil.example/"))
    assert created.status_code == 303 and created.headers["location"] == "https://seller.example/thanks"
    # The emailed link of the same purchase would have led to the same place.
    with Session(accounts.engine) as session:
        assert {t.after_setup_url for t in session.exec(select(SetupToken)).all()} == {"https://seller.example/thanks"}

    other_token, other_sha256 = browser_token()
    accounts.deliver(purchase("fay@example.com", other_sha256, after_setup_url="javascript:alert(1)"))
    assert accounts.browser().post("/setup", data=details(other_token)).headers["location"].startswith(LIBRARY)


def test_a_password_chosen_at_checkout_waits_for_its_purchase_then_signs_the_browser_in_once(accounts):
    token, token_sha256 = browser_token()
    browser = accounts.browser()
    posted = browser.post("/setup/checkout", data=details(token))
    assert posted.status_code == 200 and "preparing your account" in posted.text
    assert f"/setup/checkout?token={token}&amp;wait=1" in posted.text
    with Session(accounts.engine) as session:
        pending = session.get(PendingActivation, token_sha256)
        assert pending.password_hash.startswith("$argon2id$") and PASSWORD not in pending.password_hash
    assert "preparing your account" in browser.get(f"/setup/checkout?token={token}&wait=1").text

    bought = purchase("gus@example.com", token_sha256, after_setup_url="https://seller.example/welcome")
    accounts.deliver(bought)
    customer = accounts.customer("gus@example.com")
    assert (customer.first_name, customer.last_name, customer.activated_at is not None) == ("Ann", "Lee", True)
    with Session(accounts.engine) as session:
        assert handlers.authenticate(session, email="gus@example.com", password=PASSWORD) is not None
    assert [type(e) for e in accounts.published()] == [CustomerRegistered, AccountActivated]  # no setup link

    someone_else = accounts.browser()
    signed_in = browser.get(f"/setup/checkout?token={token}&wait=2")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "https://seller.example/welcome"
    assert browser.cookies.get(SESSION_COOKIE)
    replayed = someone_else.get(f"/setup/checkout?token={token}")  # the address, from a browser's history
    assert replayed.status_code == 410 and not someone_else.cookies.get(SESSION_COOKIE)


def test_a_password_chosen_at_checkout_after_its_purchase_arrived_signs_in_at_once(accounts):
    token, token_sha256 = browser_token()
    accounts.deliver(purchase("hal@example.com", token_sha256))
    browser = accounts.browser()
    signed_in = browser.post("/setup/checkout", data=details(token))
    assert signed_in.status_code == 303 and signed_in.headers["location"].startswith(LIBRARY)
    assert browser.cookies.get(SESSION_COOKIE)
    assert accounts.browser().post("/setup/checkout", data=details(token)).status_code == 410


def test_a_password_stored_while_its_purchase_arrived_is_applied_by_the_waiting_page(accounts):
    token, token_sha256 = browser_token()
    accounts.deliver(purchase("ida@example.com", token_sha256))
    with Session(accounts.engine) as session:  # as if posted while register_buyer ran
        session.add(PendingActivation(token_sha256=token_sha256, first_name="Ida", last_name="Ro",
                                      password_hash=hash_password(PASSWORD),
                                      expires_at=datetime.now(timezone.utc) + timedelta(hours=1)))
        session.commit()
    browser = accounts.browser()
    assert browser.get(f"/setup/checkout?token={token}").status_code == 303
    assert accounts.customer("ida@example.com").first_name == "Ida"


def test_a_password_chosen_at_checkout_never_sets_up_an_email_that_bought_before(accounts):
    earlier = purchase("jo@example.com", browser_token()[1])
    accounts.deliver(earlier)
    token, token_sha256 = browser_token()
    browser = accounts.browser()
    assert "preparing your account" in browser.post("/setup/checkout", data=details(token)).text

    accounts.deliver(purchase("jo@example.com", token_sha256, customer_id=earlier.customer_id))
    assert accounts.customer("jo@example.com").activated_at is None
    with Session(accounts.engine) as session:
        assert session.get(PendingActivation, token_sha256) is None  # the password is not kept
    page = browser.get(f"/setup/checkout?token={token}&wait=1")
    assert page.status_code == 200 and "already has purchases" in page.text
    assert not browser.cookies.get(SESSION_COOKIE)
    assert len(accounts.links()) == 2  # one per purchase; the second proves the email


@pytest.mark.parametrize(("field", "value", "message"), [
    ("first_name", "A" * 101, "A name can be at most 100 characters."),
    ("last_name", "L" * 101, "A name can be at most 100 characters."),
    ("last_name", "   ", "Enter your first and last name."),
    ("password", "p" * (MAX_LENGTH + 1), f"Choose a password of at most {MAX_LENGTH} characters."),
])
@pytest.mark.parametrize("path", ["/setup", "/setup/checkout"])
def test_each_account_field_has_a_limit_checked_before_anything_is_stored(accounts, path, field, value, message):
    token, token_sha256 = browser_token()
    if path == "/setup":
        accounts.deliver(purchase("kim@example.com", token_sha256))
    before = accounts.published()
    form = details(token)
    form[field] = value
    if field == "password":
        form["password_repeat"] = value
    page = accounts.browser().post(path, data=form)
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert message in page.text
    assert value not in page.text or value.strip() == ""  # never echoed back
    assert accounts.published() == before
    with Session(accounts.engine) as session:
        assert session.exec(select(PendingActivation)).all() == []
        assert all(c.activated_at is None for c in session.exec(select(Customer)).all())


def test_two_huge_names_get_a_page_not_an_event(accounts):
    """Issue 12: two 900 KB names once made an event larger than Kafka accepts."""
    token, token_sha256 = browser_token()
    accounts.deliver(purchase("lou@example.com", token_sha256))
    before = accounts.published()
    page = accounts.browser().post("/setup", data=details(token, first_name="x" * 900_000, last_name="y" * 900_000))
    assert page.status_code == 413 and page.headers["content-type"].startswith("text/html")
    assert "larger than any account form can be" in page.text
    assert accounts.published() == before
    assert accounts.browser().post("/setup", data=details(token)).status_code == 303


def test_odd_requests_get_pages_for_people_never_json(accounts):
    browser = accounts.browser()
    long_token = browser.get("/setup", params={"token": "t" * 10_000})
    assert long_token.status_code == 404 and "not valid" in long_token.text  # no waiting for it
    assert browser.get("/setup", params={"token": "t" * 64, "wait": "many"}).status_code == 200
    as_file = browser.post("/setup", files={"token": ("token.txt", b"abc")})
    assert as_file.status_code in (403, 422) and as_file.headers["content-type"].startswith("text/html")
    login = browser.post("/login", data={"email": "a" * 300 + "@example.com", "password": "p" * 5000,
                                         "next": "https://x.example/" + "n" * 5000})
    assert login.status_code == 401 and "do not match" in login.text and "nnnn" not in login.text
    assert browser.get("/login", params={"email": "e" * 1000}).text.count("eeee") == 0


def test_password_rules_are_shared_with_checkout():
    assert password_problem("p" * MIN_LENGTH, "p" * MIN_LENGTH) is None
    assert password_problem("p" * (MIN_LENGTH - 1), "p" * (MIN_LENGTH - 1)) is not None
    assert password_problem("p" * MAX_LENGTH, "p" * MAX_LENGTH) is None
    assert password_problem("p" * MIN_LENGTH, "q" * MIN_LENGTH) == "The two passwords are not the same."
