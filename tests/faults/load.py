"""Buyers during a fault: one-time purchases, subscriptions and full refunds over HTTP, as a
browser and a seller make them, each retried until it goes through.

A buyer whose request fails for a passing reason (the service killed, the database restarting:
a refused connection or a 5xx) tries again, as a person clicks "Pay" again: on the same checkout
session, so the charge's idempotency key is the same and a retry can never pay twice. What the
buyers saw paid is what the invariant checker compares the databases with.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import httpx

from postsale_local.suite import Suite

RETRY_FOR = 120.0  # seconds a buyer keeps trying; longer than any fault the tests inject
Send = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True)
class Offers:
    one_time: str  # offer ids
    subscription: str
    product_id: str  # what both grant


def create_offers(suite: Suite) -> Offers:
    """A membership product sold once and as a monthly subscription (no trial: paid at once)."""
    name = f"Course {uuid.uuid4().hex[:6]}"
    product_id = suite.create_product(name)
    one_time = suite.create_offer({"name": f"{name} once", "product_ids": [product_id],
                                   "price": {"amount": 4900, "currency": "EUR"}})
    monthly = suite.create_offer({"name": f"{name} monthly", "product_ids": [product_id],
                                  "price": {"amount": 900, "currency": "EUR"},
                                  "billing": {"type": "subscription", "interval": "month"}})
    return Offers(one_time["id"], monthly["id"], product_id)


@dataclass
class Ledger:
    """What the buyers of a suite saw: the invariant checker compares the databases with it."""

    paid: dict[str, str] = field(default_factory=dict)  # buyer's email -> the offer they saw paid
    refunded: list[str] = field(default_factory=list)  # purchase ids the seller refunded
    retries: int = 0  # requests that failed for a passing reason and were sent again


@dataclass
class Load:
    """Purchases one after another, a new buyer every `interval` seconds at most, until `stop()`
    and at least `minimum` of them; every `subscription_every`-th is a subscription and every
    `refund_every`-th one-time purchase is then fully refunded by the seller."""

    suite: Suite
    offers: Offers
    ledger: Ledger  # of the whole suite: this load's buyers are added to it as they pay
    minimum: int = 20
    interval: float = 1.0
    subscription_every: int = 4
    refund_every: int = 5
    paid: dict[str, str] = field(default_factory=dict)  # this load's, as in `Ledger`
    refunded: list[str] = field(default_factory=list)
    retries: int = 0
    failures: list[BaseException] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Load":
        self._thread = threading.Thread(target=self._run, name="buyers", daemon=True)
        self._thread.start()
        return self

    def wait_for(self, purchases: int, timeout: float = 120) -> None:
        """Returns once `purchases` went through (the fault tests strike in the middle of the load)."""
        deadline = time.monotonic() + timeout
        while len(self.paid) < purchases and not self.failures:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.paid)} of {purchases} purchases went through in {timeout}s")
            time.sleep(0.05)
        self._raise_failure()

    def stop(self, timeout: float = 300) -> None:
        """Lets the buyers finish (at least `minimum` purchases) and stop."""
        self._stopping.set()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the buyers did not finish"
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.failures:
            raise AssertionError(f"a buyer could not complete: {self.failures[0]!r}") from self.failures[0]

    def _run(self) -> None:
        try:
            n = 0
            while not (self._stopping.is_set() and len(self.paid) >= self.minimum):
                n += 1
                if n > 1:
                    self._stopping.wait(self.interval)  # moderate load: tens of purchases per fault
                if n % self.subscription_every == 0:
                    self.buy(self.offers.subscription)
                    continue
                email = self.buy(self.offers.one_time)
                if n % self.refund_every == 0:
                    self.refund(email)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.failures.append(exc)

    # -- one buyer, one seller action -------------------------------------------------------------

    def buy(self, offer_id: str) -> str:
        email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
        with httpx.Client(base_url=self.suite.url("checkout"), timeout=15) as browser:
            started = self._send(browser, lambda b: b.post(f"/offers/{offer_id}/checkout", data={"email": email}),
                                 expect=(303,))
            payment_url = started.headers["location"]
            # Paid once the answer leads on (library, account set-up); a redirect back to the
            # payment page means not paid (the database failed between the steps): pay again.
            deadline = time.monotonic() + RETRY_FOR
            while (paid := self._send(browser, lambda b: b.post(f"{payment_url}/pay", data={
                    "card_number": "4242424242424242"}), expect=(303,))).headers["location"] == payment_url:
                assert time.monotonic() < deadline, f"{payment_url} still not paid after {RETRY_FOR:.0f}s"
                self.retries += 1
                self.ledger.retries += 1
                time.sleep(0.3)
            assert paid.headers["location"] != payment_url
        self.paid[email] = self.ledger.paid[email] = offer_id
        return email

    def refund(self, email: str) -> str:
        """The seller refunds the buyer's purchase in full; a retry after a lost answer finds
        nothing left to refund (409), which is the same outcome."""
        with self.suite.admin("checkout") as seller:
            found = self._send(seller, lambda s: s.get("/admin/purchases", params={"email": email}), expect=(200,))
            [purchase] = found.json()
            self._send(seller, lambda s: s.post(f"/admin/purchases/{purchase['id']}/refunds",
                                                json={"reason": "fault test"}), expect=(201, 409))
        self.refunded.append(purchase["id"])
        self.ledger.refunded.append(purchase["id"])
        return purchase["id"]

    def _send(self, client: httpx.Client, send: Send, *, expect: tuple[int, ...]) -> httpx.Response:
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                answer = send(client)
                if answer.status_code in expect:
                    return answer
                if answer.status_code < 500:
                    raise AssertionError(f"{answer.request.method} {answer.request.url} answered "
                                         f"{answer.status_code}: {answer.text[:500]}")
                problem: object = answer.status_code
            except httpx.TransportError as exc:
                problem = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"still failing after {RETRY_FOR:.0f}s: {problem!r}")
            self.retries += 1
            self.ledger.retries += 1
            time.sleep(0.3)
