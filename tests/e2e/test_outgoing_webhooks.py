"""Webhooks to the seller's systems across the real broker, notifications' database and SMTP: an
endpoint run by the test (a small HTTP server on a free port) gets each event it subscribed to,
signed so that the `standardwebhooks` library verifies it, through failures, a dead letter and
its replay, and is disabled with the seller told when it keeps failing.

The running service makes each first attempt; later attempts fall due hours and days later, so
the test runs them with the service's own sender code on its database with a clock it moves
(the rows are the schedule), never by sleeping."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook, WebhookVerificationError

from postsale.contracts import Event, Money, PurchaseCompleted, PurchasedProduct, encode
from postsale.notifications.config import WebhookSettings
from postsale.notifications.webhooks.sender import Sender
from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from tests.support import eventually, pay, start_checkout

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]


class SellerEndpoint:
    """The seller's endpoint: answers each POST with the next status of `answers` (the last one
    repeats) and verifies its signature with the `standardwebhooks` library."""

    def __init__(self, *answers: int, says: bytes | None = None) -> None:
        self.answers = list(answers)
        self.says = says  # the body of every answer; default: "the seller's system says <status>"
        self.secret: str | None = None
        self.received: list[dict] = []  # webhook-id, the verified body or the refusal, the status answered
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    verified = Webhook(endpoint.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError as exc:
                    verified = f"refused: {exc}"
                status = endpoint.answers.pop(0) if len(endpoint.answers) > 1 else endpoint.answers[0]
                endpoint.received.append({"webhook-id": self.headers["webhook-id"], "body": verified,
                                          "status": status})
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(endpoint.says or f"the seller's system says {status}".encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/postsale/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MovedClock:
    """The wall clock moved forward by `offset`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def later(suite) -> Iterator[tuple[Sender, MovedClock]]:
    """The service's sender on the service's database, with a clock the test moves."""
    engine = make_engine(suite.database_urls["notifications"])
    clock = MovedClock()
    sender = Sender(engine, WebhookSettings(), private_allowed=True, clock=clock)
    try:
        yield sender, clock
    finally:
        sender.close()
        engine.dispose()


def register(suite, endpoint: SellerEndpoint, *event_types: str, alert_email: str) -> dict:
    with suite.admin("notifications") as admin:
        created = admin.post("/admin/webhook-endpoints", json={
            "url": endpoint.url, "event_types": list(event_types), "description": "The seller's CRM",
            "alert_emails": [alert_email]})
    assert created.status_code == 201, created.text
    endpoint.secret = created.json()["secret"]
    return created.json()


def deliveries(suite, endpoint_id: str) -> list[dict]:
    with suite.admin("notifications") as admin:
        answer = admin.get(f"/admin/webhook-endpoints/{endpoint_id}/deliveries")
    assert answer.status_code == 200, answer.text
    return answer.json()


def run_later(sender: Sender, clock: MovedClock, done, *, step: timedelta, limit: timedelta):
    """Moves the clock `step` at a time and runs the attempts due, until `done()` is truthy."""
    while not (result := done()):
        assert clock.offset < limit, f"not done after moving the clock {clock.offset}"
        clock.offset += step
        while sender.run_due():
            pass
    return result


async def publish(bootstrap: str, event: Event) -> None:
    """As checkout publishes: on the event's topic, keyed by customer."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        headers, value = encode(event, source="/tests")
        await producer.send_and_wait(event.topic, value, key=event.key().encode(), headers=list(headers.items()))
    finally:
        await producer.stop()


def purchase_event() -> PurchaseCompleted:
    """A purchase as checkout publishes it (the offer and product need not exist for a webhook)."""
    customer_id = f"cus_{uuid.uuid4().hex[:12]}"
    return PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:12]}", customer_id=customer_id, email=f"{customer_id}@example.com",
        offer_id="offer_webhooks", offer_name="Creator Club",
        products=[PurchasedProduct(product_id="prod_webhooks", name="The Club", delivery_type="membership")],
        amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_test",
        completed_at=utcnow(), new_customer=True)


def test_a_purchase_reaches_an_endpoint_that_fails_twice_then_succeeds_signed_each_time(suite, store, later):
    endpoint = SellerEndpoint(500, 500, 200)
    try:
        created = register(suite, endpoint, "postsale.purchase.completed", alert_email="ops@seller.test")
        email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
        with httpx.Client() as browser:
            paid = pay(browser, suite, start_checkout(browser, suite, store.offer_id, email))
        assert paid.status_code == 303, paid.text

        # The running service makes the first attempt as soon as the purchase arrives.
        eventually(lambda: endpoint.received, timeout=60)
        sender, clock = later
        [delivery] = run_later(sender, clock, lambda: [d for d in deliveries(suite, created["id"])
                                                       if d["status"] == "delivered"],
                               step=timedelta(minutes=20), limit=timedelta(hours=6))
    finally:
        endpoint.close()

    assert [r["status"] for r in endpoint.received] == [500, 500, 200]
    assert {r["webhook-id"] for r in endpoint.received} == {delivery["id"]}  # one id to deduplicate with
    for request in endpoint.received:
        assert isinstance(request["body"], dict), request["body"]  # the library verified every attempt
        assert request["body"]["type"] == "postsale.purchase.completed"
        assert request["body"]["data"]["email"] == email and request["body"]["data"]["offer_id"] == store.offer_id
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["recent_attempts"]] == [500, 500, 200]
    assert delivery["recent_attempts"][0]["response_excerpt"] == "the seller's system says 500"
    # Each attempt's latency is recorded, within the attempt's 10-second deadline.
    assert all(isinstance(a["latency_ms"], (int, float)) and 0 <= a["latency_ms"] < 10_000
               for a in delivery["recent_attempts"])


async def test_a_dead_letter_is_replayed_with_the_same_webhook_id(suite, later, kafka_bootstrap):
    endpoint = SellerEndpoint(503)
    sender, clock = later
    try:
        created = register(suite, endpoint, "postsale.purchase.completed", alert_email="ops@seller.test")
        event = purchase_event()
        await publish(kafka_bootstrap, event)
        eventually(lambda: endpoint.received, timeout=60)
        # Three days of retries, then the seller sees it among the endpoint's dead letters.
        [dead] = run_later(sender, clock, lambda: [d for d in deliveries(suite, created["id"])
                                                   if d["status"] == "failed"],
                           step=timedelta(hours=3), limit=timedelta(days=4))
        assert dead["attempts"] == 10 and dead["last_status_code"] == 503
        assert dead["payload"]["data"]["purchase_id"] == event.purchase_id

        endpoint.answers = [200]  # the seller fixed the endpoint
        with suite.admin("notifications") as admin:
            replayed = admin.post(f"/admin/webhook-deliveries/{dead['id']}/replay")
            assert replayed.status_code == 202, replayed.text
            again = admin.post(f"/admin/webhook-deliveries/{dead['id']}/replay")
        # The running service sends the replay at once.
        [delivered] = eventually(lambda: [d for d in deliveries(suite, created["id"]) if d["status"] == "delivered"],
                                 timeout=60)
    finally:
        endpoint.close()

    assert again.status_code == 409  # no longer a dead letter
    assert delivered["id"] == dead["id"] and delivered["attempts"] == 11
    assert endpoint.received[-1]["status"] == 200 and endpoint.received[-1]["webhook-id"] == dead["id"]
    assert endpoint.received[-1]["body"]["data"]["purchase_id"] == event.purchase_id  # verified by the library


async def test_an_endpoint_failing_for_days_is_disabled_and_the_seller_is_emailed(
        suite, later, kafka_bootstrap, smtp_inbox):
    endpoint = SellerEndpoint(500)
    sender, clock = later
    alert = f"ops-{uuid.uuid4().hex[:8]}@seller.test"
    try:
        created = register(suite, endpoint, "postsale.purchase.completed", alert_email=alert)
        await publish(kafka_bootstrap, purchase_event())
        eventually(lambda: endpoint.received, timeout=60)
        run_later(sender, clock, lambda: deliveries(suite, created["id"])[0]["attempts"] >= 9,
                  step=timedelta(hours=3), limit=timedelta(days=4))
        # Another sale two days later, while the first is still retried: it fails too, until the
        # endpoint has failed for five days.
        await publish(kafka_bootstrap, purchase_event())
        eventually(lambda: len(deliveries(suite, created["id"])) == 2, timeout=60)

        def disabled():
            with suite.admin("notifications") as admin:
                found = admin.get(f"/admin/webhook-endpoints/{created['id']}").json()
            return not found["enabled"] and found

        found = run_later(sender, clock, disabled, step=timedelta(hours=3), limit=timedelta(days=7))
    finally:
        endpoint.close()

    assert "answered 500" in found["disabled_reason"]
    assert [d["status"] for d in deliveries(suite, created["id"])] == ["failed", "failed"]
    message = smtp_inbox.wait_for(lambda m: m["To"] == alert, timeout=60)
    assert message["Subject"] == f"Webhook endpoint disabled: {endpoint.url}"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "2 delivery(ies) wait as dead letters" in text
    assert f"POST /admin/webhook-endpoints/{created['id']}/replay-failed" in text
