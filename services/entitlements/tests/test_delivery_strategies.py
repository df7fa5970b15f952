"""Each delivery strategy, and the runner that calls them, on a real (SQLite) database with the clock
in the test's hand: purchases and refunds in; deliveries, their attempts, the outbox, links, keys and
third-party calls (an httpx mock transport standing for the endpoint) out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from delivery_support import (CUSTOMER, EMAIL, T0, Clock, Endpoint, delivery_scheduler, handle, migrated_engine, paid,
                              product, published, refunded, resolve_publicly)
from postsale.contracts import (DisputeOpened, DisputeWon, DownloadLinkIssued, FulfilmentRequested, LicenseKeyIssued,
                                IntegrationCallFailed)
from postsale.entitlements import access_views, grants, handlers, products
from postsale.entitlements.adapters.tables import Delivery, DeliveryAttempt, DeliveryRun, Grant
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.delivery import STRATEGIES, download, license_key, membership
from postsale.entitlements.delivery.base import RETRY_SCHEDULE, BaseStrategy, CustomerMustAct, Result
from postsale.entitlements.delivery.integration import sign
from postsale.runtime.settings import PublicUrls

pytestmark = pytest.mark.unit
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    resolve_publicly(monkeypatch)


def deliveries(engine, product_id: str) -> list[Delivery]:
    with Session(engine) as session:
        return list(session.exec(select(Delivery).where(Delivery.product_id == product_id)
                                 .order_by(Delivery.created_at, Delivery.id)).all())


def attempts(engine, delivery_id: str) -> list[DeliveryAttempt]:
    with Session(engine) as session:
        return list(session.exec(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                 .order_by(DeliveryAttempt.attempt)).all())


def grant_of(engine, purchase_id: str) -> Grant:
    with Session(engine) as session:
        return session.exec(select(Grant).where(Grant.purchase_id == purchase_id)).one()


# --- the runner ------------------------------------------------------------------------------------


def test_a_grant_and_its_refund_each_get_a_delivery_recorded_with_the_change(engine):
    course = product(engine, "Course", "membership")
    purchase = paid(course, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    handle(engine, handlers.apply_refund, refunded(purchase, T0 + timedelta(hours=1)), T0 + timedelta(hours=1))

    granted, revoked = deliveries(engine, course)
    assert (granted.action, granted.ledger_action, granted.status, granted.detail) == (
        "grant", "grant", "done", "the library opens its content")
    assert (revoked.action, revoked.ledger_action, revoked.reason, revoked.status) == (
        "revoke", "revoke", "full refund", "done")
    assert [a.outcome for a in attempts(engine, granted.id)] == ["done"]


def test_access_that_begins_and_ends_in_one_change_delivers_nothing(engine):
    course = product(engine, "Course", "membership")
    purchase = paid(course, purchase_id="pur_1")
    handle(engine, handlers.apply_refund, refunded(purchase, T0), T0)  # the refund arrives first
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    assert deliveries(engine, course) == []


class Exploding(BaseStrategy):
    """A strategy that writes, then fails: its write must go, its failure must stay."""

    delivery_type = "membership"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def grant(self, ctx, delivery):
        ctx.session.add(Grant(id="grant_written_by_a_failing_strategy", customer_id="x", product_id="x",
                              product_name="x", delivery_type="x", source="seller", status="active", reason="x",
                              granted_at=T0, changed_at=T0, last_seq=0))
        raise self.error

    def revoke(self, ctx, delivery):
        return Result()


def test_a_failing_strategy_keeps_the_grant_records_the_failure_and_is_retried(engine, monkeypatch):
    course = product(engine, "Course", "membership")
    monkeypatch.setitem(STRATEGIES, "membership", Exploding(RuntimeError("disk full")))
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)

    [delivery] = deliveries(engine, course)
    assert (delivery.status, delivery.attempts, delivery.detail) == ("retrying", 1, "RuntimeError: disk full")
    with Session(engine) as session:
        assert access_views.check_access(session, CUSTOMER, course, T0) is not None  # the grant stands
        assert session.get(Grant, "grant_written_by_a_failing_strategy") is None  # the strategy's write is gone
        [run] = session.exec(select(DeliveryRun)).all()
        assert run.due_at.replace(tzinfo=T0.tzinfo) == T0 + RETRY_SCHEDULE[0]

    monkeypatch.setitem(STRATEGIES, "membership", membership.MembershipStrategy())  # the cause is fixed
    clock = Clock(T0 + timedelta(minutes=1))
    assert delivery_scheduler(engine, clock).run_due() == 1
    [delivery] = deliveries(engine, course)
    assert (delivery.status, [a.outcome for a in attempts(engine, delivery.id)]) == ("done", ["retry", "done"])


def test_the_customer_must_act_is_recorded_and_not_retried(engine, monkeypatch):
    course = product(engine, "Course", "membership")
    monkeypatch.setitem(STRATEGIES, "membership", Exploding(CustomerMustAct("connect your Discord account")))
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)
    [delivery] = deliveries(engine, course)
    assert (delivery.status, delivery.detail, delivery.finished_at is not None) == (
        "needs_customer", "connect your Discord account", True)
    with Session(engine) as session:
        assert session.exec(select(DeliveryRun)).all() == []


# --- download --------------------------------------------------------------------------------------


def add_file(engine, product_id: str, name: str = "book.pdf") -> str:
    with Session(engine) as session:
        file = download.add_file(session, file_id=download.new_file_id(), product_id=product_id, name=name,
                                 content_type="application/pdf", size=3, sha256="x" * 64, now=T0)
        session.commit()
        return file.id


def open_link(engine, token: str, now):
    with Session(engine) as session:
        opened = download.open_link(session, token, now=now)
        session.commit()
        return opened


def test_a_download_grant_sends_a_link_that_is_counted_and_stops_at_the_limit(engine):
    ebook = product(engine, "Ebook", "download", download_limit=2)
    add_file(engine, ebook)
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, purchase_id="pur_1"), T0)

    [issued] = published(engine, DownloadLinkIssued)
    assert (issued.email, issued.file_name, issued.downloads_left) == (EMAIL, "book.pdf", 2)
    assert issued.expires_at == T0 + timedelta(minutes=DeliverySettings().download_link_minutes)
    token = issued.url.rsplit("/downloads/", 1)[1]
    assert issued.url.startswith(PublicUrls().entitlements_url)

    assert open_link(engine, token, T0 + timedelta(minutes=1)).downloads_left == 1
    assert open_link(engine, token, T0 + timedelta(minutes=2)).downloads_left == 0
    with pytest.raises(download.LimitReached):
        open_link(engine, token, T0 + timedelta(minutes=3))

    with Session(engine) as session:  # the seller gives this grant more
        grants.set_download_limit(session, customer_id=CUSTOMER, grant_id=grant_of(engine, "pur_1").id,
                                    download_limit=3)
        session.commit()
    assert open_link(engine, token, T0 + timedelta(minutes=4)).downloads_left == 0


def test_a_link_dies_on_a_refund_is_held_on_a_dispute_and_says_when_it_expired(engine):
    ebook = product(engine, "Ebook", "download")
    add_file(engine, ebook)
    purchase = paid(ebook, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    token = published(engine, DownloadLinkIssued)[0].url.rsplit("/", 1)[1]

    dispute = {"dispute_id": "dp_1", "purchase_id": "pur_1", "customer_id": CUSTOMER, "email": EMAIL,
               "amount": purchase.amount, "provider": "sandbox"}
    handle(engine, handlers.apply_dispute, DisputeOpened(**dispute, opened_at=T0 + timedelta(minutes=1)),
           T0 + timedelta(minutes=1))
    with pytest.raises(download.AccessEnded) as held:
        open_link(engine, token, T0 + timedelta(minutes=2))
    assert (held.value.on_hold, held.value.reason) == (True, "dispute opened")
    handle(engine, handlers.apply_dispute, DisputeWon(**dispute, closed_at=T0 + timedelta(minutes=3)),
           T0 + timedelta(minutes=3))
    assert open_link(engine, token, T0 + timedelta(minutes=4)).downloads_left is None
    assert len(published(engine, DownloadLinkIssued)) == 1  # coming back is not a new delivery email

    with pytest.raises(download.LinkExpired):
        open_link(engine, token, T0 + timedelta(days=2))
    handle(engine, handlers.apply_refund, refunded(purchase, T0 + timedelta(minutes=5)), T0 + timedelta(minutes=5))
    with pytest.raises(download.AccessEnded) as ended:
        open_link(engine, token, T0 + timedelta(minutes=6))
    assert (ended.value.on_hold, ended.value.reason) == (False, "full refund")
    with pytest.raises(download.LinkUnknown):
        open_link(engine, "not-a-token", T0)


def test_a_download_product_without_a_file_waits_and_sends_the_link_once_one_is_uploaded(engine):
    ebook = product(engine, "Ebook", "download")
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, purchase_id="pur_1"), T0)
    [waiting] = deliveries(engine, ebook)
    assert (waiting.status, waiting.detail) == ("retrying", "the product has no file yet: upload one and the link "
                                                            "goes out")
    add_file(engine, ebook)
    with Session(engine) as session:
        assert products.retry_deliveries(session, ebook, T0 + timedelta(seconds=1)) == 1
        session.commit()
    assert delivery_scheduler(engine, Clock(T0 + timedelta(seconds=1))).run_due() == 1
    assert deliveries(engine, ebook)[0].status == "done"
    assert len(published(engine, DownloadLinkIssued)) == 1


def test_the_library_makes_a_fresh_link_per_click_for_an_active_grant_only(engine):
    ebook = product(engine, "Ebook", "download")
    file_id = add_file(engine, ebook)
    purchase = paid(ebook, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    grant_id = grant_of(engine, "pur_1").id
    with Session(engine) as session:
        first = download.link_for_library(session, customer_id=CUSTOMER, grant_id=grant_id, file_id=file_id, now=T0,
                                          lifetime=timedelta(minutes=10))
        second = download.link_for_library(session, customer_id=CUSTOMER, grant_id=grant_id, file_id=file_id, now=T0,
                                           lifetime=timedelta(minutes=10))
        session.commit()
        assert first != second
        with pytest.raises(download.LinkUnknown):  # someone else's grant
            download.link_for_library(session, customer_id="cus_other", grant_id=grant_id, file_id=file_id, now=T0,
                                      lifetime=timedelta(minutes=10))
    with pytest.raises(download.LinkExpired):
        open_link(engine, first, T0 + timedelta(minutes=11))
    handle(engine, handlers.apply_refund, refunded(purchase, T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1))
    with Session(engine) as session, pytest.raises(download.AccessEnded):
        download.link_for_library(session, customer_id=CUSTOMER, grant_id=grant_id, file_id=file_id,
                                  now=T0 + timedelta(minutes=2), lifetime=timedelta(minutes=10))


# --- integration -----------------------------------------------------------------------------------


def verify(request: httpx.Request, secret: str = SECRET) -> dict:
    """What the third party does: checks the Standard Webhooks signature on the raw body."""
    message_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + request.content,
                                         hashlib.sha256).digest()).decode()
    signatures = [s.split(",", 1)[1] for s in request.headers["webhook-signature"].split() if s.startswith("v1,")]
    assert any(hmac.compare_digest(expected, s) for s in signatures), "bad signature"
    return json.loads(request.content)


def test_the_signature_is_the_standard_webhooks_reference_one():
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def club(engine, **settings) -> str:
    return product(engine, "Club", "integration", endpoint_url="https://members.example.com/postsale",
                   secret=SECRET, **settings)


def test_a_grant_is_sent_signed_after_the_change_and_retried_until_the_endpoint_answers(engine):
    members = club(engine)
    handle(engine, handlers.grant_access_for_purchase, paid(members, purchase_id="pur_1"), T0)
    [delivery] = deliveries(engine, members)
    assert (delivery.status, delivery.attempts) == ("pending", 0)  # nothing is called inside the change

    endpoint, clock = Endpoint(503, 200), Clock(T0)
    scheduler = delivery_scheduler(engine, clock, endpoint.client())
    assert scheduler.run_due() == 1
    [failed] = published(engine, IntegrationCallFailed)
    assert (failed.call_id, failed.platform, failed.attempt, failed.action, failed.next_retry_at) == (
        delivery.id, "members.example.com", 1, "grant", T0 + RETRY_SCHEDULE[0])
    assert scheduler.run_due() == 0  # not due yet
    clock.now = T0 + RETRY_SCHEDULE[0]
    assert scheduler.run_due() == 1

    first, second = endpoint.requests
    assert first.content == second.content and first.headers["webhook-id"] == second.headers["webhook-id"]
    body = verify(second)
    assert second.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    assert (body["type"], body["data"]["action"], body["data"]["customer_id"], body["data"]["email"],
            body["data"]["purchase_id"]) == ("access.granted", "grant", CUSTOMER, EMAIL, "pur_1")
    [delivery] = deliveries(engine, members)
    assert delivery.status == "done"
    assert [(a.outcome, a.status_code) for a in attempts(engine, delivery.id)] == [("retry", 503), ("done", 200)]


def test_retries_run_for_three_days_then_the_failure_is_published_for_good(engine):
    members = club(engine)
    handle(engine, handlers.grant_access_for_purchase, paid(members, purchase_id="pur_1"), T0)
    endpoint, clock = Endpoint(*[500] * 20), Clock(T0)
    scheduler = delivery_scheduler(engine, clock, endpoint.client())
    while (delivery := deliveries(engine, members)[0]).status in ("pending", "retrying"):
        clock.now = delivery.next_attempt_at.replace(tzinfo=T0.tzinfo)
        assert scheduler.run_due() == 1

    assert (delivery.status, delivery.attempts) == ("failed", len(RETRY_SCHEDULE) + 1)
    span = attempts(engine, delivery.id)[-1].started_at.replace(tzinfo=T0.tzinfo) - T0
    assert timedelta(days=2) < span <= timedelta(days=3)
    failures = published(engine, IntegrationCallFailed)
    assert [f.attempt for f in failures] == list(range(1, len(RETRY_SCHEDULE) + 2))
    assert failures[-1].next_retry_at is None and all(f.next_retry_at for f in failures[:-1])


def test_410_gone_stops_at_once_and_a_revoke_is_kept_while_another_grant_gives_the_product(engine):
    members = club(engine)
    first, second = paid(members, purchase_id="pur_1"), paid(members, purchase_id="pur_2")
    handle(engine, handlers.grant_access_for_purchase, first, T0)
    scheduler = delivery_scheduler(engine, Clock(T0), Endpoint(410).client())
    scheduler.run_due()
    assert deliveries(engine, members)[0].status == "failed"

    handle(engine, handlers.grant_access_for_purchase, second, T0)
    handle(engine, handlers.apply_refund, refunded(first, T0), T0)
    endpoint = Endpoint()
    delivery_scheduler(engine, Clock(T0), endpoint.client()).run_due()
    by_change = {(d.purchase_id, d.action): d for d in deliveries(engine, members)}
    assert (by_change[("pur_1", "revoke")].status, by_change[("pur_1", "revoke")].detail) == (
        "skipped", "another grant still gives the customer this product")
    assert by_change[("pur_2", "grant")].status == "done"  # not superseded by a revoke that was never sent
    assert [verify(r)["data"]["purchase_id"] for r in endpoint.requests] == ["pur_2"]


def test_a_newer_change_supersedes_a_call_still_waiting(engine):
    members = club(engine)
    purchase = paid(members, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    handle(engine, handlers.apply_refund, refunded(purchase, T0), T0 + timedelta(seconds=1))
    endpoint = Endpoint()
    delivery_scheduler(engine, Clock(T0 + timedelta(seconds=1)), endpoint.client()).run_due()
    assert [(d.action, d.status) for d in deliveries(engine, members)] == [("grant", "superseded"),
                                                                           ("revoke", "done")]
    [call] = endpoint.requests
    assert (verify(call)["type"], verify(call)["data"]["reason"]) == ("access.revoked", "full refund")


def test_an_integration_without_an_endpoint_waits_for_one(engine):
    members = product(engine, "Club", "integration")
    handle(engine, handlers.grant_access_for_purchase, paid(members, purchase_id="pur_1"), T0)
    endpoint = Endpoint()
    delivery_scheduler(engine, Clock(T0), endpoint.client()).run_due()
    assert deliveries(engine, members)[0].detail == "no endpoint is set for this product"
    with Session(engine) as session:
        products.configure_delivery(session, members, {"endpoint_url": "https://members.example.com/hook"})
        products.retry_deliveries(session, members, T0)
        session.commit()
    delivery_scheduler(engine, Clock(T0), endpoint.client()).run_due()
    assert deliveries(engine, members)[0].status == "done" and len(endpoint.requests) == 1


# --- license keys ----------------------------------------------------------------------------------


def test_a_license_key_per_grant_activates_up_to_its_limit_and_is_revoked_with_access(engine):
    app = product(engine, "Editor", "license_key", activation_limit=2, expires_days=365, prefix="EDIT")
    purchase = paid(app, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    with Session(engine) as session:
        key = license_key.key_of(session, grant_of(engine, "pur_1").id)
        assert key.key.startswith("EDIT-") and key.expires_at.replace(tzinfo=T0.tzinfo) == T0 + timedelta(days=365)
        [issued] = published(engine, LicenseKeyIssued)  # for the email that delivers it
        assert (issued.license_id, issued.license_key, issued.email, issued.max_activations, issued.expires_at,
                issued.purchase_id) == (key.id, key.key, EMAIL, 2, T0 + timedelta(days=365), "pur_1")
        laptop, view = license_key.activate(session, key.key.lower(), "laptop", T0)
        assert (view.valid, view.activations) == (True, 1)
        assert license_key.activate(session, key.key, "laptop", T0)[0].id == laptop.id  # the same again
        license_key.activate(session, key.key, "desktop", T0)
        with pytest.raises(license_key.LicenseRefused) as full:
            license_key.activate(session, key.key, "tablet", T0)
        assert (full.value.code, full.value.http_status) == ("activation_limit_reached", 409)
        license_key.deactivate(session, key.key, laptop.id, T0)
        license_key.activate(session, key.key, "tablet", T0)
        session.commit()
        text = key.key

    handle(engine, handlers.apply_refund, refunded(purchase, T0 + timedelta(days=1)), T0 + timedelta(days=1))
    with Session(engine) as session:
        assert license_key.validate(session, text, T0 + timedelta(days=1)).status == "revoked"
        with pytest.raises(license_key.LicenseRefused) as refused:
            license_key.activate(session, text, "phone", T0 + timedelta(days=1))
        assert (refused.value.code, refused.value.http_status) == ("revoked", 403)
        assert license_key.key_of(session, grant_of(engine, "pur_1").id).revoked_at is not None
        with pytest.raises(license_key.LicenseRefused) as unknown:
            license_key.validate(session, "EDIT-NOPE-NOPE", T0)
        assert unknown.value.http_status == 404


def test_a_license_key_is_on_hold_during_a_dispute_and_expires_by_itself(engine):
    app = product(engine, "Editor", "license_key", expires_days=30)
    purchase = paid(app, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    dispute = {"dispute_id": "dp_1", "purchase_id": "pur_1", "customer_id": CUSTOMER, "email": EMAIL,
               "amount": purchase.amount, "provider": "sandbox"}
    handle(engine, handlers.apply_dispute, DisputeOpened(**dispute, opened_at=T0), T0)
    with Session(engine) as session:
        text = license_key.key_of(session, grant_of(engine, "pur_1").id).key
        assert license_key.validate(session, text, T0).status == "suspended"
    handle(engine, handlers.apply_dispute, DisputeWon(**dispute, closed_at=T0), T0)
    with Session(engine) as session:
        assert license_key.validate(session, text, T0).status == "active"
        assert license_key.validate(session, text, T0 + timedelta(days=31)).status == "expired"


# --- none --------------------------------------------------------------------------------------------


def test_a_purchase_of_a_none_product_requests_its_fulfilment_and_a_manual_grant_does_not(engine):
    seat = product(engine, "Masterclass seat", "none", kind="webinar", details={"session": "2026-12-01 18:00 CET"})
    handle(engine, handlers.grant_access_for_purchase, paid(seat, purchase_id="pur_1"), T0)
    [request] = published(engine, FulfilmentRequested)
    assert (request.purchase_id, request.customer_id, request.email, request.product_id, request.kind,
            request.details, request.shipping_address) == (
        "pur_1", CUSTOMER, EMAIL, seat, "webinar", {"session": "2026-12-01 18:00 CET"}, None)

    with Session(engine) as session:
        grants.grant_by_seller(session, customer_id=CUSTOMER, product_id=seat, now=T0)
        session.commit()
    assert len(published(engine, FulfilmentRequested)) == 1
    [manual] = [d for d in deliveries(engine, seat) if d.purchase_id is None]
    assert (manual.status, manual.detail) == ("skipped", "a manual grant has no purchase to fulfil")


# --- membership ------------------------------------------------------------------------------------


def test_lessons_drip_from_when_access_began(engine):
    course = product(engine, "Course", "membership")
    with Session(engine) as session:
        week1 = membership.add_section(session, course, title="Week 1")
        welcome = membership.add_lesson(session, course, week1.id, title="Welcome", body="Hello")
        later = membership.add_lesson(session, course, week1.id, title="Deep dive", drip_days=7,
                                      video_url="https://video.example.com/1.mp4")
        session.commit()
        [(section, lessons)] = membership.customer_content(session, course, T0, T0 + timedelta(days=1))
        assert section.title == "Week 1"
        assert [(v.lesson.id, v.open, v.opens_at) for v in lessons] == [
            (welcome.id, True, T0), (later.id, False, T0 + timedelta(days=7))]
        [(_, lessons)] = membership.customer_content(session, course, T0, T0 + timedelta(days=7))
        assert all(v.open for v in lessons)
        with pytest.raises(membership.NotAMembership):
            membership.add_section(session, product(engine, "Ebook", "download"), title="x")
