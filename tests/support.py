"""Helpers the tests share."""

from __future__ import annotations

import hashlib
import json
import html
import hmac
import re
import time
import uuid
from typing import Callable
from urllib.parse import urljoin

import httpx

from postsale_local.stripe_test_mode import StripeTestMode
from postsale_local.suite import Suite

STRIPE_WEBHOOK_SECRET = "whsec_postsale_tests_only"


def eventually(check: Callable[[], object], timeout: float = 30, interval: float = 0.2):
    """The first truthy result of `check` within `timeout`, else AssertionError with the last result."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last result: {result!r})")


def start_checkout(browser: httpx.Client, suite: Suite, offer_id: str, email: str, **request) -> str:
    """Gives the email on the offer page, as a buyer does first; returns the payment page's URL."""
    started = browser.post(f"{suite.url('checkout')}/offers/{offer_id}/checkout", data={"email": email}, **request)
    assert started.status_code == 303, started.text
    return suite.url("checkout") + started.headers["location"]


def create_product(suite: Suite, name: str, delivery_type: str = "membership") -> str:
    return suite.create_product(name, delivery_type=delivery_type)


def create_offer(suite: Suite, **body) -> dict:
    body.setdefault("price", {"amount": 4900, "currency": "EUR"})
    return suite.create_offer(body)


def set_up_account(browser: httpx.Client, suite: Suite, setup_url: str, *, password: str = "correct horse battery"):
    """Fills in the account page a new buyer lands on; returns the response to the form."""
    page = eventually(lambda: (p := browser.get(setup_url)).status_code == 200 and 'name="token"' in p.text and p)
    token = page.text.split('name="token" value="', 1)[1].split('"', 1)[0]
    return browser.post(f"{suite.url('accounts')}/setup", data={
        "token": token, "first_name": "Ann", "last_name": "Lee", "password": password, "password_repeat": password,
        "csrf_token": form_field(page.text, "csrf_token")})


def form_field(page: str, name: str) -> str:
    """The value of a page's hidden form field."""
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def csrf_token(browser: httpx.Client, suite: Suite) -> str:
    """The CSRF token accounts' forms carry for this browser (and its login session), as a page of
    accounts gives it; every form that changes state must send it."""
    return form_field(browser.get(f"{suite.url('accounts')}/login/link").text, "csrf_token")


def log_in(browser: httpx.Client, suite: Suite, email: str, password: str, **fields) -> httpx.Response:
    """The login form, filled in as a customer does."""
    return browser.post(f"{suite.url('accounts')}/login", data={
        "email": email, "password": password, "csrf_token": csrf_token(browser, suite), **fields})


def log_out(browser: httpx.Client, suite: Suite) -> httpx.Response:
    return browser.post(f"{suite.url('accounts')}/logout", data={"csrf_token": csrf_token(browser, suite)})


def sign_webhook(payload: bytes, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: `t=<unix time>,v1=<HMAC-SHA256 of "t.payload">`."""
    timestamp = timestamp or int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def follow_page(browser: httpx.Client, response: httpx.Response, timeout: float = 30) -> httpx.Response:
    """Follows redirects and self-refreshing pages (`<meta http-equiv="refresh">`), as a browser does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if response.is_redirect:
            response = browser.get(urljoin(str(response.url), response.headers["location"]))
            continue
        refresh = re.search(r'http-equiv="refresh" content="\d+;url=([^"]+)"', response.text)
        if refresh is None:
            return response
        time.sleep(0.3)
        response = browser.get(urljoin(str(response.url), html.unescape(refresh.group(1))))
    raise AssertionError(f"still waiting after {timeout}s at {response.url}")


JSON = {"Accept": "application/json"}
# The sandbox's test card numbers and the Stripe test payment methods that behave the same.
STRIPE_METHODS = {"4242424242424242": "pm_card_visa", "4000000000000341": "pm_card_chargeCustomerFail"}


def on_stripe(suite: Suite) -> bool:
    return suite.extra_env.get("CHECKOUT_PAYMENT_PROVIDER") == "stripe"


def send_stripe_event(suite: Suite, event_type: str, obj: dict, event_id: str | None = None) -> httpx.Response:
    """A webhook as Stripe sends it: the event, signed with the store's webhook secret."""
    event = {"id": event_id or f"evt_{uuid.uuid4().hex}", "object": "event", "api_version": "2024-06-20",
             "type": event_type, "created": int(time.time()), "livemode": False, "data": {"object": obj}}
    payload = json.dumps(event).encode()
    return httpx.post(f"{suite.url('checkout')}/webhooks/stripe", content=payload,
                      headers={"Stripe-Signature": sign_webhook(payload)})


def start_stripe_payment(browser: httpx.Client, payment_url: str, **form) -> dict:
    """What the Stripe payment page's script does first: post the form, get the intent to confirm."""
    started = browser.post(f"{payment_url}/pay", data=form, headers=JSON)
    assert started.status_code == 200, started.text
    answer = started.json()
    assert answer["status"] == "requires_action" and answer["client_secret"]
    return answer


def pay(browser: httpx.Client, suite: Suite, payment_url: str, *, card: str = "4242424242424242",
        stripe: StripeTestMode | None = None, **form) -> httpx.Response:
    """Pays on the payment page as a buyer does, on either provider. The sandbox takes the card
    number; on Stripe the page gets an intent, Stripe.js confirms it (the test-mode proxy here),
    Stripe's webhook arrives, and the page goes on to /complete."""
    if not on_stripe(suite):
        return browser.post(f"{payment_url}/pay", data={"card_number": card, **form})
    assert stripe is not None, "a store on Stripe pays through the test-mode proxy"
    intent = start_stripe_payment(browser, payment_url, **form)
    stripe.confirm(intent["payment_id"], STRIPE_METHODS["".join(ch for ch in card if ch.isdigit())])
    kind = "setup_intent" if intent["mode"] == "setup" else "payment_intent"
    send_stripe_event(suite, f"{kind}.succeeded", stripe.intent(intent["payment_id"]))
    return browser.post(f"{payment_url}/complete", data=form)


def events_on_topic(bootstrap: str, topic: str, match: Callable[[object], bool], *, expect: int = 1,
                    timeout: float = 60, settle: float = 5) -> list:
    """The events on `topic` that `match`, read from the topic's start by a consumer group of its own:
    waits until `expect` of them have come (at most `timeout` seconds), then `settle` seconds more, so
    that a duplicate, or one that must not come, would show."""
    from confluent_kafka import Consumer

    from postsale.contracts import DecodeError, decode

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tests-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list = []
    deadline = time.monotonic() + timeout
    settled = None  # when to stop once enough came; counted from the partitions' assignment
    try:
        while time.monotonic() < (settled or deadline):
            record = consumer.poll(0.5)
            if settled is None and expect == 0 and consumer.assignment():
                settled = time.monotonic() + settle
            if record is None or record.error():
                continue
            try:
                event = decode(record.headers() or [], record.value())
            except DecodeError:  # another test's poison record, or an event type this reader does not know
                continue
            if match(event):
                found.append(event)
                if len(found) >= expect and settled is None:
                    settled = time.monotonic() + settle
    finally:
        consumer.close()
    return found
