"""Access follows the offer's policy: checkout's events (hand-made here, on the real broker) reach
the running entitlements, and the seller's access view and the customer's library say what
changed and why."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from postsale.accounts.adapters.signing import SessionSigner
from postsale.contracts import (AccessGranted, AccessPolicy, AccessRestored, AccessSuspended, DisputeLost,
                                DisputeOpened, DisputeWon, Money, PurchaseCompleted, PurchasedProduct, PurchaseRefunded,
                                SubscriptionCancelled, SubscriptionPaused, SubscriptionResumed, decode, encode, topics)
from postsale.contracts.base import Event
from postsale.runtime.auth import SESSION_COOKIE
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]
EUR = Money(amount=4900, currency="EUR")


def now() -> datetime:
    return datetime.now(timezone.utc)


class Buyer:
    """A customer of the running suite: what checkout would publish about them, and what the
    seller and the customer see in entitlements."""

    def __init__(self, suite, kafka_bootstrap: str) -> None:
        self.suite, self.kafka_bootstrap = suite, kafka_bootstrap
        self.customer_id = f"cus_{uuid.uuid4().hex[:12]}"
        self.email = f"{self.customer_id}@example.com"

    def purchase(self, *product_ids: str, policy: AccessPolicy = AccessPolicy(), subscription_id: str | None = None,
                 completed_at: datetime | None = None) -> PurchaseCompleted:
        return PurchaseCompleted(
            purchase_id=f"pur_{uuid.uuid4().hex[:16]}", customer_id=self.customer_id, email=self.email,
            offer_id="offer_test", offer_name="Test offer",
            products=[PurchasedProduct(product_id=p, name=f"Product {p}", delivery_type="membership")
                      for p in product_ids],
            amount=EUR, provider="sandbox", provider_payment_id="sbx_test", completed_at=completed_at or now(),
            new_customer=False, access_policy=policy, subscription_id=subscription_id)

    def refund(self, purchase: PurchaseCompleted, *, full: bool) -> PurchaseRefunded:
        return PurchaseRefunded(refund_id=f"re_{uuid.uuid4().hex[:12]}", purchase_id=purchase.purchase_id,
                                customer_id=self.customer_id, email=self.email, amount=EUR, total_refunded=EUR,
                                full=full, actor="seller", refunded_at=now())

    def dispute(self, purchase: PurchaseCompleted, dispute_id: str = "dp_1") -> dict:
        return {"dispute_id": dispute_id, "purchase_id": purchase.purchase_id, "customer_id": self.customer_id,
                "email": self.email, "amount": EUR, "provider": "sandbox"}

    def billing(self, purchase: PurchaseCompleted) -> dict:
        return {"subscription_id": purchase.subscription_id, "billing": "subscription",
                "purchase_id": purchase.purchase_id, "customer_id": self.customer_id, "email": self.email,
                "offer_id": "offer_test"}

    async def publish(self, *events: Event) -> list[str]:
        """Publishes the events in order, each on its topic under the customer's key; their ids."""
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        ids = []
        try:
            for event in events:
                headers, value = encode(event, source="/tests/checkout")
                await producer.send_and_wait(event.topic, value, key=event.key().encode(),
                                             headers=list(headers.items()))
                ids.append(headers["ce_id"].decode())
        finally:
            await producer.stop()
        return ids

    # --- what the seller sees ---

    def access(self) -> dict[str, dict]:
        with self.suite.admin("entitlements") as entitlements:
            answer = entitlements.get(f"/admin/access/customers/{self.customer_id}")
        assert answer.status_code == 200, answer.text
        return {p["product_id"]: p for p in answer.json()["products"]}

    def product(self, product_id: str) -> dict | None:
        return self.access().get(product_id)

    def once(self, product_id: str, condition) -> dict:
        """The product's access view, once `condition` holds for it."""
        return eventually(lambda: (p := self.product(product_id)) is not None and condition(p) and p)

    def ledger(self) -> list[dict]:
        with self.suite.admin("entitlements") as entitlements:
            return entitlements.get(f"/admin/access/customers/{self.customer_id}/ledger").json()

    # --- what the customer sees ---

    def browser(self) -> httpx.Client:
        """A browser logged in as the customer, with a session as accounts signs it."""
        signer = SessionSigner(self.suite.secrets["ACCOUNTS_SESSION_SIGNING_KEY"])
        token = signer.sign(customer_id=self.customer_id, email=self.email, session_id=uuid.uuid4().hex,
                            lifetime=timedelta(hours=1))
        browser = httpx.Client(base_url=self.suite.url("entitlements"), timeout=10)
        browser.cookies.set(SESSION_COOKIE, token)
        return browser

    def library(self) -> str:
        with self.browser() as browser:
            page = browser.get("/library")
        assert page.status_code == 200, page.text
        return page.text


def in_library(page: str, product_id: str) -> bool:
    return f'data-product-id="{product_id}" data-available="true"' in page


def no_longer_in_library(page: str, product_id: str, reason: str) -> bool:
    start = page.find(f'data-product-id="{product_id}" data-available="false"')
    return start >= 0 and reason in page[start:page.find("</li>", start)]


@pytest.fixture
def buyer(suite, kafka_bootstrap) -> Buyer:
    return Buyer(suite, kafka_bootstrap)


@pytest.fixture
def course(suite) -> str:
    return suite.create_product(f"Course {uuid.uuid4().hex[:6]}")


@pytest.fixture
def ebook(suite) -> str:
    return suite.create_product(f"Ebook {uuid.uuid4().hex[:6]}")


async def read_access_events(kafka_bootstrap: str, customer_id: str, count: int, timeout: float = 30) -> list:
    """The customer's first `count` events on entitlements.access.v1."""
    consumer = AIOKafkaConsumer(topics.ACCESS.name, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    found: list = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [decode(r.headers, r.value) for r in records if r.key == customer_id.encode()]
    finally:
        await consumer.stop()
    return found


# --- refunds ------------------------------------------------------------------------------------


async def test_refund_in_full_revokes_access_at_once(buyer, course):
    purchase = buyer.purchase(course)
    await buyer.publish(purchase)
    buyer.once(course, lambda p: p["available"])
    assert in_library(buyer.library(), course)

    [refund_id] = await buyer.publish(buyer.refund(purchase, full=True))

    revoked = buyer.once(course, lambda p: not p["available"])
    assert revoked["unavailable_because"] == "full refund"
    assert [(g["purchase_id"], g["status"]) for g in revoked["grants"]] == [(purchase.purchase_id, "revoked")]
    assert no_longer_in_library(buyer.library(), course, "full refund")
    last = buyer.ledger()[-1]
    assert (last["action"], last["reason"], last["actor"], last["cause_event_id"], last["cause_event_type"]) == (
        "revoke", "full refund", "seller", refund_id, "postsale.purchase.refunded")


async def test_a_partial_refund_keeps_access(buyer, course, ebook):
    purchase = buyer.purchase(course)
    # A later purchase on the same partition shows when the refund before it was handled.
    later = buyer.purchase(ebook)
    await buyer.publish(purchase, buyer.refund(purchase, full=False), later)

    buyer.once(ebook, lambda p: p["available"])
    assert buyer.product(course)["available"]
    assert [e["action"] for e in buyer.ledger()] == ["grant", "grant"]
    assert in_library(buyer.library(), course)


async def test_refunding_one_of_two_purchases_of_a_product_keeps_access(buyer, course):
    first, second = buyer.purchase(course), buyer.purchase(course)
    await buyer.publish(first, second)
    buyer.once(course, lambda p: len(p["active_grants"]) == 2)

    await buyer.publish(buyer.refund(first, full=True))

    kept = buyer.once(course, lambda p: any(g["status"] == "revoked" for g in p["grants"]))
    assert kept["available"]
    assert [(g["purchase_id"], g["source"]) for g in kept["active_grants"]] == [(second.purchase_id, "purchase")]
    assert in_library(buyer.library(), course)
    with buyer.suite.admin("entitlements") as entitlements:
        check = entitlements.get("/admin/access", params={"customer_id": buyer.customer_id, "product_id": course})
    assert (check.json()["has_access"], check.json()["reason"]) == (True, "purchase")


# --- disputes -----------------------------------------------------------------------------------


async def test_a_dispute_suspends_access_and_winning_it_restores_it(buyer, course, kafka_bootstrap):
    purchase = buyer.purchase(course)
    await buyer.publish(purchase, DisputeOpened(**buyer.dispute(purchase), opened_at=now()))
    on_hold = buyer.once(course, lambda p: not p["available"])
    assert (on_hold["unavailable_because"], on_hold["grants"][0]["status"]) == ("dispute opened", "suspended")
    assert "On hold" in buyer.library()

    await buyer.publish(DisputeWon(**buyer.dispute(purchase), closed_at=now()))
    buyer.once(course, lambda p: p["available"])
    assert [(e["action"], e["reason"], e["actor"]) for e in buyer.ledger()] == [
        ("grant", "purchase", "customer"), ("suspend", "dispute opened", "provider"),
        ("restore", "dispute won", "provider")]
    events = await read_access_events(kafka_bootstrap, buyer.customer_id, 3)
    assert [(type(e), e.reason) for e in events] == [
        (AccessGranted, "purchase"), (AccessSuspended, "dispute opened"), (AccessRestored, "dispute won")]


async def test_a_lost_dispute_revokes_access(buyer, course):
    purchase = buyer.purchase(course)
    await buyer.publish(purchase, DisputeOpened(**buyer.dispute(purchase), opened_at=now()),
                        DisputeLost(**buyer.dispute(purchase), closed_at=now()))
    lost = buyer.once(course, lambda p: p["grants"] and p["grants"][0]["status"] == "revoked")
    assert (lost["available"], lost["unavailable_because"]) == (False, "dispute lost")


async def test_a_dispute_won_before_its_opening_arrives_never_ends_suspended(buyer, course, ebook):
    purchase = buyer.purchase(course)
    opened_at = now()
    won = DisputeWon(**buyer.dispute(purchase), closed_at=opened_at + timedelta(seconds=5))
    opened = DisputeOpened(**buyer.dispute(purchase), opened_at=opened_at)
    await buyer.publish(purchase, won, opened, buyer.purchase(ebook))

    buyer.once(ebook, lambda p: p["available"])
    assert buyer.product(course)["available"]
    assert [e["product_id"] for e in buyer.ledger()] == [course, ebook]  # two grants, nothing else


# --- subscriptions --------------------------------------------------------------------------------


async def test_a_subscription_cancelled_to_end_soon_revokes_only_then(buyer, course):
    purchase = buyer.purchase(course, subscription_id=f"sub_{uuid.uuid4().hex[:12]}")
    await buyer.publish(purchase)
    buyer.once(course, lambda p: p["available"])
    effective_at = now() + timedelta(seconds=4)
    await buyer.publish(SubscriptionCancelled(**buyer.billing(purchase), effective_at=effective_at, actor="customer",
                                              reason="customer request", cancelled_at=now()))

    waiting = buyer.once(course, lambda p: p["until"] is not None)
    assert waiting["available"]
    assert datetime.fromisoformat(waiting["until"]) == effective_at
    assert waiting["active_grants"][0]["ends_because"] == "subscription cancelled"

    ended = buyer.once(course, lambda p: not p["available"])
    assert ended["unavailable_because"] == "subscription cancelled"
    assert now() >= effective_at
    revoke = eventually(lambda: (last := buyer.ledger()[-1])["action"] == "revoke" and last)
    assert (revoke["reason"], revoke["actor"], revoke["cause_event_type"]) == (
        "subscription cancelled", "customer", "postsale.subscription.cancelled")
    assert datetime.fromisoformat(revoke["created_at"]) >= effective_at


async def test_a_paused_subscription_on_a_suspend_policy_holds_access_until_it_resumes(buyer, course):
    purchase = buyer.purchase(course, policy=AccessPolicy(on_pause="suspend"),
                              subscription_id=f"sub_{uuid.uuid4().hex[:12]}")
    await buyer.publish(purchase)
    buyer.once(course, lambda p: p["available"])

    await buyer.publish(SubscriptionPaused(**buyer.billing(purchase), actor="customer", paused_at=now()))
    paused = buyer.once(course, lambda p: not p["available"])
    assert paused["unavailable_because"] == "subscription paused"

    await buyer.publish(SubscriptionResumed(**buyer.billing(purchase), actor="customer", resumed_at=now()))
    buyer.once(course, lambda p: p["available"])
    assert buyer.ledger()[-1]["reason"] == "subscription resumed"


# --- time-limited access ----------------------------------------------------------------------


async def test_access_for_n_days_ends_by_itself_and_the_library_says_until_when(buyer, course):
    # Bought a day ago, minus a few seconds, for one day: it ends in a few seconds.
    ends_at = now() + timedelta(seconds=4)
    purchase = buyer.purchase(course, policy=AccessPolicy(access_days=1), completed_at=ends_at - timedelta(days=1))
    await buyer.publish(purchase)

    granted = buyer.once(course, lambda p: p["available"])
    assert datetime.fromisoformat(granted["until"]) == ends_at
    assert f'until <time datetime="{ends_at.isoformat()}">{ends_at.strftime("%d %b %Y")}</time>' in buyer.library()

    expired = buyer.once(course, lambda p: not p["available"])
    assert expired["unavailable_because"] == "access period ended"
    entry = eventually(lambda: (last := buyer.ledger()[-1])["action"] == "expire" and last)
    assert (entry["reason"], entry["actor"], entry["cause_event_type"]) == (
        "access period ended", "system", "postsale.purchase.completed")


# --- the seller's hand ------------------------------------------------------------------------


async def test_the_seller_grants_and_revokes_by_hand_and_the_purchase_stays(buyer, suite, course, ebook):
    await buyer.publish(buyer.purchase(ebook))
    buyer.once(ebook, lambda p: p["available"])

    with suite.admin("entitlements") as entitlements:
        granted = entitlements.post(f"/admin/access/customers/{buyer.customer_id}/grants",
                                    json={"product_id": course, "note": "speaker at the conference"})
        assert granted.status_code == 201, granted.text
        grant = granted.json()
        assert (grant["source"], grant["status"], grant["reason"], grant["note"]) == (
            "seller", "active", "granted by the seller", "speaker at the conference")
        assert buyer.product(course)["active_grants"][0]["id"] == grant["id"]
        assert in_library(buyer.library(), course)

        revoked = entitlements.post(f"/admin/access/customers/{buyer.customer_id}/grants/{grant['id']}/revoke",
                                    json={"note": "talk cancelled"})
        assert (revoked.status_code, revoked.json()["status"]) == (200, "revoked")

        unknown = entitlements.post(f"/admin/access/customers/cus_{uuid.uuid4().hex[:8]}/grants", json={"product_id": course})
        assert unknown.status_code == 422 and "give their email" in unknown.json()["detail"]
        no_such = entitlements.post(f"/admin/access/customers/{buyer.customer_id}/grants/grant_nope/revoke")
        assert no_such.status_code == 404

    assert buyer.product(course)["unavailable_because"] == "revoked by the seller"
    assert buyer.product(ebook)["available"]
    assert no_longer_in_library(buyer.library(), course, "revoked by the seller")
    assert [(e["action"], e["actor"], e["note"]) for e in buyer.ledger()][1:] == [
        ("grant", "seller", "speaker at the conference"), ("revoke", "seller", "talk cancelled")]


# --- read your own purchase ---------------------------------------------------------------------


async def test_the_library_waits_for_the_purchase_the_buyer_just_made(buyer, course):
    purchase = buyer.purchase(course)
    with buyer.browser() as browser:
        waiting = browser.get("/library", params={"purchase": purchase.purchase_id})
        assert waiting.status_code == 200
        assert "data-waiting-for-purchase" in waiting.text
        assert f'url=/library?purchase={purchase.purchase_id}&amp;wait=1"' in waiting.text

        await buyer.publish(purchase)

        def refreshed() -> httpx.Response | None:
            page = browser.get("/library", params={"purchase": purchase.purchase_id, "wait": "1"})
            return page if "data-waiting-for-purchase" not in page.text else None

        page = eventually(refreshed)
        assert in_library(page.text, course)
        assert "data-on-its-way" not in page.text


async def test_the_library_stops_waiting_and_says_the_purchase_is_on_its_way(buyer, suite):
    with buyer.browser() as browser:
        page = browser.get("/library", params={"purchase": "pur_not_here_yet", "wait": "10"})
        assert page.status_code == 200
        assert "data-waiting-for-purchase" not in page.text
        assert "Your purchase is on its way" in page.text
    with httpx.Client(base_url=suite.url("entitlements")) as logged_out:
        to_login = logged_out.get("/library", params={"purchase": "pur_1"})
        assert to_login.status_code == 303
        assert "purchase%3Dpur_1" in to_login.headers["location"]
