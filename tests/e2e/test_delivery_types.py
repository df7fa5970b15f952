"""Each delivery type from purchase to what the customer gets, on the real broker and PostgreSQL:
purchases are published as checkout publishes them, the running entitlements delivers, and the
test looks where the customer, the seller or a third party would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from postsale.contracts import (AccessPolicy, DownloadLinkIssued, FulfilmentRequested, IntegrationCallFailed,
                                PurchaseCompleted, PurchasedProduct, decode, delivery_fields, topics)
from postsale.runtime.db import make_engine
from postsale_local.processes import free_port
from tests.e2e.test_access_policy import EUR, Buyer, in_library, no_longer_in_library, now
from tests.support import eventually, form_field

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]


class DeliveryBuyer(Buyer):
    def bought(self, product_id: str, delivery_type: str, *, policy: AccessPolicy = AccessPolicy()) -> PurchaseCompleted:
        return PurchaseCompleted(
            purchase_id=f"pur_{uuid.uuid4().hex[:16]}", customer_id=self.customer_id, email=self.email,
            offer_id="offer_test", offer_name="Test offer",
            products=[PurchasedProduct(product_id=product_id, name=f"Product {product_id}",
                                       **delivery_fields(delivery_type))],
            amount=EUR, provider="sandbox", provider_payment_id="sbx_test", completed_at=now(), new_customer=False,
            access_policy=policy)


@pytest.fixture
def buyer(suite, kafka_bootstrap) -> DeliveryBuyer:
    return DeliveryBuyer(suite, kafka_bootstrap)


def make_product(suite, delivery_type: str, **settings) -> dict:
    with suite.admin("entitlements") as entitlements:
        made = entitlements.post("/admin/products", json={
            "name": f"{delivery_type} {uuid.uuid4().hex[:6]}", "delivery_type": delivery_type, **settings})
    assert made.status_code == 201, made.text
    return made.json()


# --- the seller's hand, through the API other teams use --------------------------------------------


async def test_the_seller_grants_and_revokes_through_admin_grants_and_revocations(buyer, suite):
    course = make_product(suite, "membership")["id"]
    await buyer.publish(buyer.bought(course, "membership"))
    buyer.once(course, lambda p: p["available"])
    until = now() + timedelta(days=30)

    with suite.admin("entitlements") as entitlements:
        granted = entitlements.post("/admin/grants", json={
            "customer_id": buyer.customer_id, "product_id": course, "reason": "bonus month",
            "expires_at": until.isoformat()})
        assert granted.status_code == 201, granted.text
        assert len(buyer.product(course)["active_grants"]) == 2

        revoked = entitlements.post("/admin/revocations", json={
            "customer_id": buyer.customer_id, "product_id": course, "reason": "chargeback fraud"})
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["available"] is False

    assert no_longer_in_library(buyer.library(), course, "revoked by the seller")
    assert [(e["action"], e["actor"], e["note"]) for e in buyer.ledger()] == [
        ("grant", "customer", None), ("grant", "seller", "bonus month"),
        ("revoke", "seller", "chargeback fraud"), ("revoke", "seller", "chargeback fraud")]
    assert not in_library(buyer.library(), course)
    eventually(lambda: buyer.product(course)["unavailable_because"] == "revoked by the seller")


async def read_events(kafka_bootstrap: str, topic: str, customer_id: str, count: int, timeout: float = 30) -> list:
    """The customer's first `count` events on `topic`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None)
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


# --- download ----------------------------------------------------------------------------------------


async def test_a_download_link_works_is_counted_stops_at_the_limit_and_dies_on_a_refund(buyer, suite,
                                                                                          kafka_bootstrap):
    ebook = make_product(suite, "download", download={"download_limit": 2})["id"]
    with suite.admin("entitlements") as entitlements:
        uploaded = entitlements.post(f"/admin/products/{ebook}/files",
                                     files={"file": ("guide.pdf", b"%PDF-1.7 " + b"x" * 300_000, "application/pdf")})
        assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    purchase = buyer.bought(ebook, "download")
    await buyer.publish(purchase)

    [issued] = await read_events(kafka_bootstrap, topics.DOWNLOAD_LINKS.name, buyer.customer_id, 1)
    assert isinstance(issued, DownloadLinkIssued)
    assert (issued.product_id, issued.file_name, issued.downloads_left) == (ebook, "guide.pdf", 2)
    with httpx.Client(timeout=10) as anyone:  # the emailed link needs no login
        first = anyone.get(issued.url)
        assert (first.status_code, len(first.content), first.headers["x-downloads-left"]) == (200, 300_009, "1")

        with buyer.browser() as browser:  # the library's button makes a fresh link
            page = browser.get("/library").text
            assert f'data-download-file="{file_id}"' in page and "1 of 2 downloads left" in page
            grant_id = buyer.product(ebook)["active_grants"][0]["id"]
            clicked = browser.post(f"/library/downloads/{grant_id}/{file_id}", follow_redirects=True,
                                   data={"csrf_token": form_field(page, "csrf_token")})
            assert (clicked.status_code, clicked.headers["x-downloads-left"]) == (200, "0")

        used_up = anyone.get(issued.url)
        assert used_up.status_code == 403 and "No downloads left" in used_up.text

        await buyer.publish(buyer.refund(purchase, full=True))
        buyer.once(ebook, lambda p: not p["available"])
        dead = anyone.get(issued.url)
        assert dead.status_code == 403 and "Access to this download has ended" in dead.text
        assert "full refund" in dead.text

    with suite.admin("entitlements") as entitlements:
        assert entitlements.delete(f"/admin/products/{ebook}/files/{file_id}").status_code == 204


# --- integration ---------------------------------------------------------------------------------------


class ThirdParty:
    """A membership platform's endpoint, run by the test on a free port: it checks the Standard
    Webhooks signature of each call and answers from a script."""

    def __init__(self, secret: str, answers: list[int]) -> None:
        self.secret, self.answers, self.calls = secret, list(answers), []
        party = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                party.calls.append((dict(self.headers), body, party.verify(self.headers, body)))
                status = party.answers.pop(0) if party.answers else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/postsale"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, headers, body: bytes) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
        return fresh and any(hmac.compare_digest(s.removeprefix("v1,"), expected)
                             for s in headers["webhook-signature"].split() if s.startswith("v1,"))

    def __enter__(self) -> "ThirdParty":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_third_party_endpoint_gets_a_signed_grant_retried_until_it_answers_and_the_revoke(
        buyer, suite, kafka_bootstrap):
    created = make_product(suite, "integration", integration={"endpoint_url": "http://127.0.0.1:9/unused"})
    club, secret = created["id"], created["integration"]["secret"]
    with ThirdParty(secret, answers=[503, 500]) as platform, suite.admin("entitlements") as entitlements:
        entitlements.put(f"/admin/products/{club}/delivery",
                         json={"integration": {"endpoint_url": platform.url, "secret": secret}}).raise_for_status()
        purchase = buyer.bought(club, "integration")
        await buyer.publish(purchase)

        # The first attempt at once, the second 5 seconds later; both fail.
        def deliveries() -> list[dict]:
            return entitlements.get(f"/admin/products/{club}/deliveries").json()["deliveries"]

        waiting = eventually(lambda: (d := deliveries()) and len(d[0]["attempts"]) == 2 and d[0])
        assert [(a["outcome"], a["status_code"]) for a in waiting["attempts"]] == [("retry", 503), ("retry", 500)]
        next_at = datetime.fromisoformat(waiting["next_attempt_at"])
        assert next_at - datetime.fromisoformat(waiting["attempts"][1]["started_at"]) == timedelta(minutes=5)

        # Instead of waiting five minutes, the seller asks for the retry now.
        assert entitlements.post(f"/admin/products/{club}/deliveries/retry").json() == {"retried": 1}
        delivered = eventually(lambda: (d := deliveries()[0])["status"] == "done" and d)
        assert [a["status_code"] for a in delivered["attempts"]] == [503, 500, 200]

        await buyer.publish(buyer.refund(purchase, full=True))
        revoked = eventually(lambda: (d := deliveries()[0])["action"] == "revoke" and d["status"] == "done" and d)
        assert revoked["reason"] == "full refund"

    assert [verified for _, _, verified in platform.calls] == [True] * 4
    bodies = [json.loads(body) for _, body, _ in platform.calls]
    assert [(b["type"], b["data"]["action"]) for b in bodies] == [("access.granted", "grant")] * 3 + [
        ("access.revoked", "revoke")]
    assert {h["webhook-id"] for h, _, _ in platform.calls[:3]} == {delivered["id"]}
    assert (bodies[0]["data"]["customer_id"], bodies[0]["data"]["purchase_id"]) == (buyer.customer_id,
                                                                                    purchase.purchase_id)
    failures = await read_events(kafka_bootstrap, topics.DELIVERIES.name, buyer.customer_id, 2)
    assert [(type(f), f.attempt, f.platform) for f in failures] == [(IntegrationCallFailed, 1, "127.0.0.1"),
                                                                   (IntegrationCallFailed, 2, "127.0.0.1")]


# --- license keys ----------------------------------------------------------------------------------


async def test_a_license_key_activates_up_to_its_limit_and_is_refused_after_a_revoke(buyer, suite):
    editor = make_product(suite, "license_key", license_key={"activation_limit": 2, "prefix": "E2E"})["id"]
    purchase = buyer.bought(editor, "license_key")
    await buyer.publish(purchase)
    buyer.once(editor, lambda p: p["available"])
    page = eventually(lambda: "data-license-key" in (text := buyer.library()) and text)
    key = page.split("<code data-license-key>", 1)[1].split("</code>", 1)[0]
    assert key.startswith("E2E-")

    with httpx.Client(base_url=suite.url("entitlements"), timeout=10) as app:
        answers = [app.post("/licenses/activate", json={"key": key, "label": device})
                   for device in ("laptop", "desktop", "tablet")]
        assert [a.status_code for a in answers] == [201, 201, 409]
        assert answers[2].json()["error"] == "activation_limit_reached"
        assert app.post("/licenses/validate", json={"key": key}).json()["activations"] == 2

        with suite.admin("entitlements") as entitlements:
            entitlements.post("/admin/revocations", json={"customer_id": buyer.customer_id, "product_id": editor,
                                                          "reason": "license abuse"}).raise_for_status()
        refused = app.post("/licenses/activate", json={"key": key, "label": "phone"})
        assert (refused.status_code, refused.json()["error"]) == (403, "revoked")
        validated = app.post("/licenses/validate", json={"key": key}).json()
        assert (validated["valid"], validated["status"]) == (False, "revoked")


# --- none ----------------------------------------------------------------------------------------------


async def test_a_purchase_of_a_product_delivered_elsewhere_publishes_fulfilment_requested(buyer, suite,
                                                                                       kafka_bootstrap):
    box = make_product(suite, "none", fulfilment={"kind": "goods", "details": {"sku": "BOX-1"}})["id"]
    purchase = buyer.bought(box, "none")
    await buyer.publish(purchase)
    [request] = await read_events(kafka_bootstrap, topics.DELIVERIES.name, buyer.customer_id, 1)
    assert isinstance(request, FulfilmentRequested)
    assert (request.purchase_id, request.product_id, request.email, request.kind, request.details,
            request.shipping_address) == (purchase.purchase_id, box, buyer.email, "goods", {"sku": "BOX-1"}, None)


# --- membership ------------------------------------------------------------------------------------


async def test_a_membership_opens_its_lessons_as_they_drip(buyer, suite):
    course = make_product(suite, "membership")["id"]
    with suite.admin("entitlements") as entitlements:
        section = entitlements.post(f"/admin/products/{course}/sections", json={"title": "Module 1"}).json()
        lessons = [entitlements.post(f"/admin/products/{course}/sections/{section['id']}/lessons", json=body).json()
                   for body in ({"title": "Welcome", "body": "Glad you are here."},
                                {"title": "Week one", "drip_days": 7, "audio_url": "https://cdn.example.com/1.mp3"},
                                {"title": "Month two", "drip_days": 30})]
    bought_8_days_ago = buyer.bought(course, "membership").model_copy(update={"completed_at": now() - timedelta(days=8)})
    await buyer.publish(bought_8_days_ago)
    buyer.once(course, lambda p: p["available"])

    with buyer.browser() as browser:
        assert f'href="/library/products/{course}" data-open-membership' in browser.get("/library").text
        overview = browser.get(f"/library/products/{course}").text
        assert [f'data-lesson-id="{lesson["id"]}" data-open="{state}"' in overview
                for lesson, state in zip(lessons, ("true", "true", "false"))] == [True, True, True]
        dripped = browser.get(f"/library/products/{course}/lessons/{lessons[1]['id']}")
        assert dripped.status_code == 200 and "data-audio" in dripped.text
        locked = browser.get(f"/library/products/{course}/lessons/{lessons[2]['id']}")
        opens = (bought_8_days_ago.completed_at + timedelta(days=30)).strftime("%d %b %Y")
        assert locked.status_code == 403 and "This lesson opens on" in locked.text and opens in locked.text


# --- reconciliation ------------------------------------------------------------------------------------


def run_reconcile(suite, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "postsale.entitlements.reconcile", *args],
                          env={**os.environ, "ENTITLEMENTS_DATABASE_URL": suite.database_urls["entitlements"]},
                          capture_output=True, text=True, timeout=120)


async def test_a_seeded_mismatch_is_found_and_repaired_by_reconciliation(buyer, suite):
    course, ebook = make_product(suite, "membership")["id"], make_product(suite, "membership")["id"]
    kept, refunded = buyer.bought(course, "membership"), buyer.bought(ebook, "membership")
    await buyer.publish(kept, refunded, buyer.refund(refunded, full=True))
    buyer.once(ebook, lambda p: p["grants"] and p["grants"][0]["status"] == "revoked")
    buyer.once(course, lambda p: p["available"])

    # What a lost change would leave: the paid course lost, the refunded ebook still open.
    engine = make_engine(suite.database_urls["entitlements"])
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE access_grants SET status = 'revoked', reason = 'lost in a crash' "
                                    "WHERE purchase_id = :p"), {"p": kept.purchase_id})
            connection.execute(text("UPDATE access_grants SET status = 'active' WHERE purchase_id = :p"),
                               {"p": refunded.purchase_id})
    finally:
        engine.dispose()
    assert not in_library(buyer.library(), course) and in_library(buyer.library(), ebook)

    found = run_reconcile(suite)
    assert found.returncode == 1, found.stderr
    assert "purchases" in found.stderr  # the progress bar
    assert f"purchase {kept.purchase_id}, grant" in found.stdout.split("Access without payment")[0]
    assert "the grant is revoked (lost in a crash)" in found.stdout
    assert f"purchase {refunded.purchase_id}" in found.stdout.split("Access without payment")[1]
    assert "full refund on" in found.stdout

    repaired = run_reconcile(suite, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.count("[repaired]") >= 2

    assert in_library(buyer.library(), course) and not in_library(buyer.library(), ebook)
    mine = [e for e in buyer.ledger() if e["actor"] == "system"]
    assert sorted((e["product_id"], e["action"], e["reason"]) for e in mine) == sorted([
        (course, "restore", "reconciliation"), (ebook, "revoke", "reconciliation")])
    clean = run_reconcile(suite, "--json")
    assert clean.returncode == 0
    assert not [f for f in json.loads(clean.stdout)["findings"] if f["customer_id"] == buyer.customer_id]
