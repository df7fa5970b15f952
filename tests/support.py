"""Helpers the tests share."""

from __future__ import annotations

import time
from typing import Callable

import httpx

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
