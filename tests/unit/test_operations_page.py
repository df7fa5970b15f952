"""The back office's operations page, as `create_service_app` gives it to every service, without a
broker: the parked outbox events (SQLite) with their release, the dead letters and their replay
(Kafka's answers faked here; the end-to-end tests read a real dead-letter topic), a broker that
refuses or never answers (the page says so within its time limit), and only the owner gets in."""

from __future__ import annotations

import html
import re
import socket
import time
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from postsale.contracts import ProductPublished
from postsale.runtime import operations_pages, service, tracing
from postsale.runtime.clock import utcnow
from postsale.runtime.db import create_tables
from postsale.runtime.messaging import OutboxMessage, publish_later
from postsale.runtime.messaging.deadletters import DeadLetter
from postsale.runtime.settings import KafkaSettings
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import StaffTokens

pytestmark = pytest.mark.unit
SERVICES = ("checkout", "entitlements", "accounts", "notifications")
PAGE = "/admin/operations/checkout"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def app(tmp_path, monkeypatch):
    for name in SERVICES:
        monkeypatch.setenv(f"POSTSALE_{name.upper()}_URL", f"http://{name}.test")
    monkeypatch.setenv("POSTSALE_COOKIE_SECURE", "false")
    monkeypatch.setattr(service, "configure_logging", lambda *args, **kwargs: None)  # pytest keeps the logs
    monkeypatch.setattr(tracing, "configure_tracing", lambda *args, **kwargs: None)
    app = service.create_service_app(service="checkout", database_url=f"sqlite:///{tmp_path / 'checkout.db'}",
                                     admin_token="admin-token", migrations_dir=tmp_path, subscriptions=[])
    create_tables(app.state.engine)
    app.state.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")  # refuses at once
    app.state.staff = StaffTokens()
    app.state.staff.install(app)
    yield app
    app.state.engine.dispose()


def browser(app, role: str | None = "owner") -> TestClient:
    client = TestClient(app, base_url="http://checkout.test", follow_redirects=False,
                        headers={"Accept": "text/html"})
    if role:
        client.cookies.set(STAFF_COOKIE, app.state.staff.token(role))
    return client


def csrf(client: TestClient) -> str:
    page = client.get(PAGE)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def park(app, count: int = 1) -> list[int]:
    with Session(app.state.engine) as session:
        for n in range(count):
            publish_later(session, ProductPublished(product_id=f"prod_{n}", name="Course", delivery_type="none",
                                                    published_at=utcnow()), source="/tests")
        session.commit()
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        for row in rows:
            row.parked_at, row.attempts = utcnow(), 3
            row.last_error = "MessageSizeTooLargeError: the broker refused a record this large"
            session.add(row)
        session.commit()
        return [row.id for row in rows]


def parked_ids(app) -> list[int]:
    with Session(app.state.engine) as session:
        return list(session.exec(select(OutboxMessage.id).where(OutboxMessage.parked_at.is_not(None))).all())


def letter(offset: int, error: str, at: datetime) -> DeadLetter:
    return DeadLetter(offset=offset, original_topic="checkout.purchases.v1", original_partition=2,
                      original_offset=40 + offset, consumer="entitlements-purchases", error_type="ValueError",
                      error=error, attempts=5, failed_at=at.isoformat(), key=b"cus_ann", value=b"{}",
                      headers=[("ce_type", b"postsale.purchase.completed")])


def test_a_stranger_goes_to_the_login_and_support_is_refused(app):
    park(app)
    sent = browser(app, role=None).get(PAGE)
    assert sent.status_code == 303 and sent.headers["location"].startswith("http://accounts.test/admin/login?next=")
    support = browser(app, "support")
    refused = support.get(PAGE)
    assert refused.status_code == 403 and "Only the store's owner may do this" in html.unescape(refused.text)
    assert "data-release" not in refused.text and 'href="http://checkout.test/admin/operations/checkout"' not in refused.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', refused.text).group(1)
    assert support.post(f"{PAGE}/release", data={"csrf_token": token, "all": "1"}).status_code == 403
    assert support.post(f"{PAGE}/replay", data={"csrf_token": token}).status_code == 403
    assert len(parked_ids(app)) == 1


def test_the_page_lists_parked_events_and_says_when_kafka_cannot_be_reached(app):
    [row_id] = park(app)
    page = browser(app).get(PAGE)
    assert page.status_code == 200 and "Operations: Checkout" in page.text
    assert 'aria-current="page">Operations<' in page.text  # the back office's navigation
    for name in SERVICES:  # the other services' pages, this one marked
        assert f'href="http://{name}.test/admin/operations/{name}"' in page.text
    assert re.search(r'href="http://checkout.test/admin/operations/checkout" aria-current="page"', page.text)
    assert 'href="http://entitlements.test/admin/operations/entitlements/reconciliation"' in page.text
    assert f'data-parked-id="{row_id}"' in page.text and "postsale.product.published" in page.text
    assert "MessageSizeTooLargeError" in page.text and f"Release #{row_id}" in page.text
    assert "data-kafka-problem" in page.text and "Kafka could not be reached" in page.text
    assert "Replay all dead letters" not in page.text  # nothing to replay while the letters cannot be read


def test_a_broker_that_never_answers_does_not_hold_the_page(app, monkeypatch):
    silent = socket.socket()  # takes connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    app.state.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setattr(operations_pages, "LIST_SECONDS", 0.5)
    try:
        started = time.monotonic()
        page = browser(app).get(PAGE)
        assert time.monotonic() - started < 5
        assert page.status_code == 200 and "Kafka did not answer within 0.5 seconds" in page.text
        assert "the dead letters cannot be listed now" in page.text and "Parked events (0)" in page.text
    finally:
        silent.close()


def test_release_one_or_all_parked_events(app):
    first, second, third = park(app, 3)
    owner = browser(app)
    token = csrf(owner)
    released = owner.post(f"{PAGE}/release", data={"csrf_token": token, "ids": str(first)})
    assert released.status_code == 303
    told = owner.get(released.headers["location"]).text
    assert "1 parked event released: the outbox relay publishes it within moments" in told
    assert parked_ids(app) == [second, third] and f'data-parked-id="{first}"' not in told
    again = owner.get(owner.post(f"{PAGE}/release", data={"csrf_token": token, "ids": str(first)})
                      .headers["location"]).text
    assert "nothing left to release" in again

    for bad in ({"ids": "x"}, {"ids": "1" * 13}, {}):
        refused = owner.post(f"{PAGE}/release", data={"csrf_token": token, **bad})
        assert refused.status_code == 422 and "nothing was released" in refused.text
    assert owner.post(f"{PAGE}/release", data={"all": "1"}).status_code == 403  # no CSRF token
    assert parked_ids(app) == [second, third]

    everything = owner.post(f"{PAGE}/release", data={"csrf_token": token, "all": "1"})
    assert "2 parked events released" in owner.get(everything.headers["location"]).text
    assert parked_ids(app) == []


def test_parked_events_page_by_fifty(app):
    park(app, operations_pages.PAGE_SIZE + 1)
    owner = browser(app)
    first = owner.get(PAGE).text
    assert first.count("data-parked-id=") == operations_pages.PAGE_SIZE and "Next parked events" in first
    assert "Release all 51 parked events" in first
    second = owner.get(PAGE, params={"parked_page": "2"}).text
    assert second.count("data-parked-id=") == 1 and "Previous parked events" in second
    assert owner.get(PAGE, params={"parked_page": "²", "page": "x" * 50}).status_code == 200


def test_dead_letters_are_listed_newest_first_and_replayed_after_confirmation(app, monkeypatch):
    letters = [letter(0, "no such product prod_9", datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)),
               letter(1, "<script>boom</script>", datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc))]
    calls = []

    async def listed(kafka, name):
        calls.append(("list", kafka.bootstrap_servers, name))
        return letters

    async def replayed(kafka, name):
        calls.append(("replay", name))
        return letters

    monkeypatch.setattr(operations_pages, "list_dead_letters", listed)
    monkeypatch.setattr(operations_pages, "replay_dead_letters", replayed)
    owner = browser(app)
    page = owner.get(PAGE).text
    assert "Dead letters (2)" in page and "checkout.dead-letters" in page
    assert page.index('data-dead-letter="1"') < page.index('data-dead-letter="0"')  # newest first
    assert "02 Dec 2026, 10:00:00 UTC" in page and "checkout.purchases.v1" in page and "cus_ann" in page
    assert "ValueError: no such product prod_9" in page and "<script>boom" not in page  # escaped
    assert "postsale.purchase.completed" in page and "5 attempts" in page
    assert "Replay all dead letters" in page and "Yes, replay the dead letters" in page
    assert calls[0] == ("list", app.state.kafka.bootstrap_servers, "checkout")

    token = csrf(owner)
    assert owner.post(f"{PAGE}/replay", data={}).status_code == 403  # no CSRF token
    assert ("replay", "checkout") not in calls
    done = owner.post(f"{PAGE}/replay", data={"csrf_token": token})
    assert done.status_code == 303 and ("replay", "checkout") in calls
    assert "2 dead letters went back to the topics they came from" in owner.get(done.headers["location"]).text

    async def broken(kafka, name):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(operations_pages, "replay_dead_letters", broken)
    failed = owner.post(f"{PAGE}/replay", data={"csrf_token": token})
    assert failed.status_code == 503 and "Kafka could not be reached (ConnectionError: broker gone)" in failed.text
    assert "replaying again is safe" in failed.text
