"""Helpers the tests share."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


@dataclass
class Store:
    """A product in an offer, created through the admin APIs as a seller would."""

    product_id: str
    product_name: str
    offer_id: str
    checkout_url: str


def admin(suite: Suite, service: str) -> httpx.Client:
    return httpx.Client(base_url=suite.url(service), timeout=10,
                        headers={"Authorization": f"Bearer {suite.admin_token(service)}"})
