"""Account setup across the four services: the link by email for every new buyer, no takeover of a
customer who has not set up the account, the password chosen at checkout, and the limits of the
account page. Purchases go through checkout's pages with the sandbox test card."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from postsale.contracts import (AccountSetupLinkIssued, Money, PurchaseCompleted, PurchasedProduct, decode, encode,
                                topics)
from postsale.runtime.auth import SESSION_COOKIE
from tests.e2e.test_delivery_guarantees import read_topic
from tests.support import csrf_token, eventually, log_in, log_out, start_checkout

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def buy(suite, store, email: str, browser: httpx.Client) -> tuple[str, str, str]:
    """Pays for the store's offer as `email`; the account page's address, the purchase and the token."""
    assert browser.get(store.checkout_url).status_code == 200
    paid = browser.post(f"{start_checkout(browser, suite, store.offer_id, email)}/pay",
                        data={"card_number": "4242424242424242"})
    assert paid.status_code == 303, paid.text
    setup_url = paid.headers["location"]
    assert setup_url.startswith(f"{suite.url('accounts')}/setup?")
    query = parse_qs(urlsplit(setup_url).query)
    return setup_url, query["purchase"][0], query["token"][0]


def setup_email(smtp_inbox, purchase_id: str) -> tuple[EmailMessage, str]:
    """The "Set up your account" email of a purchase, and the link in it."""
    message = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"account-setup:{purchase_id}", timeout=60)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return message, re.search(r"(http\S+/setup\?\S+)", text).group(1)


def details(token: str, **fields) -> dict:
    return {"token": token, "first_name": "Ann", "last_name": "Lee", "password": PASSWORD,
            "password_repeat": PASSWORD, **fields}


def FROM_CHECKOUT(suite) -> dict:  # noqa: N802 - reads as a constant
    """Checkout's payment page posts the password to accounts by itself: its browser sends this."""
    return {"Origin": suite.url("checkout")}


def library(suite, browser: httpx.Client) -> httpx.Response:
    return browser.get(f"{suite.url('entitlements')}/library")


def test_a_buyer_who_closes_the_tab_sets_up_the_account_from_the_email(suite, store, smtp_inbox):
    email = f"ann-{uuid.uuid4().hex[:8]}@example.com"
    tab = httpx.Client(timeout=10)
    setup_url, purchase_id, _ = buy(suite, store, email, tab)
    # The tab is closed here. The email comes all the same.
    message, link = setup_email(smtp_inbox, purchase_id)
    assert (message["To"], message["Subject"]) == (email, "Set up your account")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="{link.replace("&", "&amp;")}"' in html and "Set up your account</a>" in html
    assert link.startswith(f"{suite.url('accounts')}/setup?purchase={purchase_id}&token=")
    assert link != setup_url  # accounts' own token, never the browser's

    later = httpx.Client(timeout=10)
    page = later.get(link)
    assert page.status_code == 200 and "Create your account" in page.text and email in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    created = later.post(f"{suite.url('accounts')}/setup", data=details(token, csrf_token=csrf_token(later, suite)))
    assert created.status_code == 303
    assert created.headers["location"].startswith(f"{suite.url('entitlements')}/library?purchase=")
    shelf = eventually(lambda: (p := library(suite, later)).status_code == 200 and store.product_name in p.text and p)
    assert email in shelf.text

    for used in (link, setup_url):  # the emailed link once used, and the browser's from the closed tab
        again = httpx.Client(timeout=10).get(used)
        assert again.status_code == 410
        assert "already set up" in again.text and 'href="/login"' in again.text
    assert len(smtp_inbox.with_key(f"account-setup:{purchase_id}")) == 1


def buy_twice(suite, store, smtp_inbox, email: str) -> tuple[httpx.Client, httpx.Client, str, str, str]:
    """The owner of `email` buys and does not set up the account; then a second browser pays with
    the same email. Both browsers, the second's account page and token, and the second purchase."""
    owner = httpx.Client(timeout=10)
    _, first_purchase, _ = buy(suite, store, email, owner)
    setup_email(smtp_inbox, first_purchase)  # accounts knows the customer; the owner never set up
    intruder = httpx.Client(timeout=10)
    setup_url, second_purchase, token = buy(suite, store, email, intruder)
    return owner, intruder, setup_url, token, second_purchase


def test_paying_with_the_email_of_a_customer_without_an_account_does_not_take_it_over(suite, store, smtp_inbox):
    """Before: anyone who paid with someone's email could set up their not yet activated account
    from the browser and see their library. Now that browser is refused; the emailed link works."""
    email = f"bo-{uuid.uuid4().hex[:8]}@example.com"
    owner, intruder, _, token, second_purchase = buy_twice(suite, store, smtp_inbox, email)
    # The link of the second purchase is out, so accounts has the second purchase by now.
    _, link = setup_email(smtp_inbox, second_purchase)

    accounts = suite.url("accounts")
    refused = intruder.post(f"{accounts}/setup", data=details(token, first_name="Mallory",
                                                              csrf_token=csrf_token(intruder, suite)))
    assert refused.status_code in (403, 404), refused.text
    assert intruder.post(f"{accounts}/setup/checkout", data=details(token, first_name="Mallory"),
                         headers=FROM_CHECKOUT(suite)).status_code != 303
    assert intruder.get(f"{accounts}/setup/checkout", params={"token": token}).status_code != 303
    assert SESSION_COOKIE not in intruder.cookies
    assert library(suite, intruder).status_code == 303  # to the login page
    assert log_in(httpx.Client(timeout=10), suite, email, PASSWORD).status_code == 401

    page = owner.get(link)
    assert page.status_code == 200 and "Create your account" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    created = owner.post(f"{accounts}/setup", data=details(token, first_name="Bo", csrf_token=csrf_token(owner, suite)))
    assert created.status_code == 303
    eventually(lambda: store.product_name in library(suite, owner).text)
    assert SESSION_COOKIE not in intruder.cookies


def test_the_second_browser_is_told_to_use_the_link_emailed_to_the_address(suite, store, smtp_inbox):
    """Needs checkout to publish the hash of that browser's token (`account_setup_token_sha256`)
    for an email that bought before too: accounts keeps it only to show this page."""
    email = f"bea-{uuid.uuid4().hex[:8]}@example.com"
    _, intruder, setup_url, token, _ = buy_twice(suite, store, smtp_inbox, email)
    page = eventually(lambda: (p := intruder.get(setup_url)).status_code == 200 and "already has purchases" in p.text
                      and p, timeout=60)
    assert "We have emailed a link to" in page.text and email in page.text
    assert 'name="password"' not in page.text
    accounts = suite.url("accounts")
    refused = intruder.post(f"{accounts}/setup", data=details(token, csrf_token=csrf_token(intruder, suite)))
    assert refused.status_code == 403 and "already has purchases" in refused.text
    at_checkout = intruder.post(f"{accounts}/setup/checkout", data=details(token), headers=FROM_CHECKOUT(suite))
    assert at_checkout.status_code == 200 and "already has purchases" in at_checkout.text
    assert SESSION_COOKIE not in intruder.cookies


def test_a_password_chosen_at_checkout_signs_the_buyer_in(suite, store, smtp_inbox):
    """Checkout's page posts name and password with the browser's token as soon as the payment
    succeeded, usually before the purchase reached accounts; the browser waits, then is signed in."""
    email = f"cy-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    _, purchase_id, token = buy(suite, store, email, browser)
    accounts = suite.url("accounts")
    response = browser.post(f"{accounts}/setup/checkout", data=details(token, first_name="Cy"),
                            headers=FROM_CHECKOUT(suite))
    waited = 0
    while response.status_code == 200 and "preparing your account" in response.text and waited < 60:
        refresh = re.search(r'url=([^"]+)"', response.text).group(1).replace("&amp;", "&")
        response = browser.get(f"{accounts}{refresh}")
        waited += 1
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"{suite.url('entitlements')}/library?purchase=")
    assert SESSION_COOKIE in browser.cookies
    eventually(lambda: store.product_name in library(suite, browser).text)

    replayed = httpx.Client(timeout=10).get(f"{accounts}/setup/checkout", params={"token": token})
    assert replayed.status_code == 410 and SESSION_COOKIE not in replayed.cookies
    logged_in = log_in(httpx.Client(timeout=10), suite, email, PASSWORD)
    assert logged_in.status_code == 303


async def test_redelivered_events_send_one_setup_email_per_purchase(suite, store, smtp_inbox, kafka_bootstrap):
    email = f"dee-{uuid.uuid4().hex[:8]}@example.com"
    _, purchase_id, _ = buy(suite, store, email, httpx.Client(timeout=10))
    setup_email(smtp_inbox, purchase_id)
    [bought] = [r for r in await read_topic(kafka_bootstrap, topics.PURCHASES.name,
                                            lambda r: _subject(r) == purchase_id) if _subject(r) == purchase_id]
    customer_id = decode(bought.headers, bought.value).customer_id

    def links_of(records) -> list:
        return [r for r in records if isinstance(e := decode(r.headers, r.value), AccountSetupLinkIssued)
                and e.customer_id == customer_id]

    async def wait_for_link_of(purchase: str):
        return links_of(await read_topic(kafka_bootstrap, topics.ACCOUNT_LINKS.name,
                                         lambda r: f"purchase={purchase}&" in decode(r.headers, r.value).url))

    [issued] = await wait_for_link_of(purchase_id)

    # The purchase again, then a later one of the same customer (same key, so the same partition):
    # once the later one's email is out, accounts has seen the copy and issued no second link.
    later = PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:16]}", customer_id=customer_id, email=email,
        offer_id=store.offer_id, offer_name="Test offer",
        products=[PurchasedProduct(product_id=store.product_id, name=store.product_name, delivery_type="membership")],
        amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=datetime.now(timezone.utc), new_customer=True,
    )
    later_headers, later_value = encode(later, source="/tests")
    await produce(kafka_bootstrap, topics.PURCHASES.name, [
        (bought.key, dict(bought.headers), bought.value), (customer_id.encode(), later_headers, later_value)])
    setup_email(smtp_inbox, later.purchase_id)
    assert len(await wait_for_link_of(later.purchase_id)) == 2  # the original's and the later one's

    # The link event again, then another link: notifications sends the first purchase's email once.
    sentinel_purchase = f"pur_sentinel_{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    sentinel = AccountSetupLinkIssued(customer_id=customer_id, email=email, expires_at=now, reason="welcome",
                                      url=f"{suite.url('accounts')}/setup?purchase={sentinel_purchase}&token=x",
                                      issued_at=now)
    sentinel_headers, sentinel_value = encode(sentinel, source="/tests")
    await produce(kafka_bootstrap, topics.ACCOUNT_LINKS.name, [
        (issued.key, dict(issued.headers), issued.value), (issued.key, sentinel_headers, sentinel_value)])
    smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"account-setup:{sentinel_purchase}")
    assert len(smtp_inbox.with_key(f"account-setup:{purchase_id}")) == 1


def _subject(record) -> str | None:
    return dict(record.headers).get("ce_subject", b"").decode() or None


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, dict[str, bytes], bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, headers, value in records:
            await producer.send_and_wait(topic, value, key=key, headers=list(headers.items()))
    finally:
        await producer.stop()


def test_two_huge_names_on_the_account_page_get_a_page_and_nothing_stalls(suite, store):
    """Issue 12: two 900 KB names once made an event larger than Kafka accepts, and accounts'
    relay published nothing after it. Now the page refuses them before anything is stored."""
    email = f"eve-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=30)
    setup_url, _, _ = buy(suite, store, email, browser)
    page = eventually(lambda: (p := browser.get(setup_url)) and "Create your account" in p.text and p, timeout=60)
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    accounts = suite.url("accounts")

    token_field = {"csrf_token": csrf_token(browser, suite)}
    huge = browser.post(f"{accounts}/setup", data=details(token, first_name="x" * 900_000, last_name="y" * 900_000,
                                                          **token_field))
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")
    assert "larger than any account form can be" in huge.text
    long = browser.post(f"{accounts}/setup", data=details(token, first_name="x" * 101, **token_field))
    assert long.status_code == 422 and "A name can be at most 100 characters." in long.text
    assert 'name="token"' in long.text  # the page again, to try once more

    assert browser.post(f"{accounts}/setup", data=details(token, **token_field)).status_code == 303
    # AccountActivated went out after them: checkout now asks this email to log in before paying.
    log_out(browser, suite)
    checkout_url = start_checkout(browser, suite, store.offer_id, email)
    eventually(lambda: (r := browser.get(checkout_url)).status_code == 303 and "/login" in r.headers["location"])
