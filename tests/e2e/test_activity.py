"""What a customer opens, across the four services on the real broker: entitlements publishes
`ContentOpened` and `ProductCompleted` on its own topic; accounts keeps the latest of each kind for
the seller's customer view and publishes `CustomerActivity` on its topic."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import jwt
import pytest
from aiokafka import AIOKafkaConsumer
from sqlmodel import Session

from postsale.accounts.adapters.tables import ActivityPublicationRow
from postsale.accounts.config import MIGRATIONS_DIR
from postsale.contracts import ContentOpened, CustomerActivity, ProductCompleted, decode, topics
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.auth import SESSION_COOKIE
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from tests.e2e.test_account_setup import buy
from tests.support import eventually, set_up_account

pytestmark = pytest.mark.e2e


async def events_on(bootstrap: str, topic: str, customer_id: str, seconds: float) -> list:
    """The events about `customer_id` on `topic`, from the start, read for `seconds`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    events = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == customer_id.encode():
                        events.append(decode(record.headers, record.value))
    finally:
        await consumer.stop()
    return events


async def wait_for_events(bootstrap: str, topic: str, customer_id: str, wanted, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = await events_on(bootstrap, topic, customer_id, 3)
        if wanted(events):
            return events
    raise AssertionError(f"not on {topic} within {timeout}s: {events!r}")


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_the_seller_sees_what_a_customer_opened_and_a_finished_course_is_told_once(suite, store,
                                                                                        kafka_bootstrap):
    with suite.admin("entitlements") as entitlements:
        section = entitlements.post(f"/admin/products/{store.product_id}/sections", json={"title": "Start"}).json()
        lessons = [entitlements.post(f"/admin/products/{store.product_id}/sections/{section['id']}/lessons",
                                     json={"title": title, "body": f"{title}."}).json()["id"]
                   for title in ("Welcome", "Next steps")]
    browser = httpx.Client(timeout=10)
    setup_url, _, _ = buy(suite, store, f"reader-{uuid.uuid4().hex[:8]}@example.com", browser)
    assert set_up_account(browser, suite, setup_url).status_code == 303
    customer_id = jwt.decode(browser.cookies[SESSION_COOKIE], options={"verify_signature": False})["sub"]
    library = suite.url("entitlements")

    # The buyer opens the library, then the first lesson.
    assert eventually(lambda: store.product_name in (page := browser.get(f"{library}/library")).text and page)
    assert browser.get(f"{library}/library/products/{store.product_id}/lessons/{lessons[0]}").status_code == 200

    with suite.admin("accounts") as accounts:
        def seen():
            last = accounts.get(f"/admin/customers/{customer_id}").json()["last_activity"]
            return last if last["library_visit"] and last["lesson"] else None

        last = eventually(seen, timeout=60)
    assert last["login"] is not None and last["download"] is None

    published = await wait_for_events(kafka_bootstrap, topics.CUSTOMERS.name, customer_id,
                                      lambda events: {"library_visit", "lesson"} <= {
                                          e.kind for e in events if isinstance(e, CustomerActivity)})
    activity = [(e.kind, e.product_id) for e in published if isinstance(e, CustomerActivity)]
    assert ("lesson", store.product_id) in activity and ("library_visit", None) in activity
    assert len(activity) == len(set(activity))  # throttled: one of each so far

    # Every lesson opened (the first one again too): the course is finished, once.
    for lesson in (lessons[1], lessons[0], lessons[1]):
        assert browser.get(f"{library}/library/products/{store.product_id}/lessons/{lesson}").status_code == 200
    await wait_for_events(kafka_bootstrap, topics.ACTIVITY.name, customer_id,
                          lambda events: any(isinstance(e, ProductCompleted) for e in events))
    events = await events_on(kafka_bootstrap, topics.ACTIVITY.name, customer_id, 3)
    [completed] = [e for e in events if isinstance(e, ProductCompleted)]
    assert (completed.product_id, completed.product_name, completed.lessons) == (
        store.product_id, store.product_name, 2)
    opened = [(e.kind, e.lesson_id) for e in events if isinstance(e, ContentOpened)]
    assert opened == [("library_visit", None), ("lesson", lessons[0])]  # the second lesson came within minutes


def test_two_replicas_claiming_at_once_on_postgresql_publish_once(postgres):
    """The throttle is the database's: a second replica's claim waits for the first one's
    transaction and then finds its row, so only one of them publishes."""
    engine = make_engine(postgres.create_database(f"throttle_{uuid.uuid4().hex[:8]}"))
    migrate(engine, MIGRATIONS_DIR)
    now = datetime.now(timezone.utc)

    def claim(session: Session, at: datetime) -> bool:
        return ActivityThrottle().claim(session, ActivityPublicationRow, customer_id="cus_1", kind="lesson",
                                        product_id="prod_1", now=at)

    with Session(engine) as first, Session(engine) as second:
        assert claim(first, now)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(claim, second, now + timedelta(seconds=1))
            time.sleep(1)
            assert not waiting.done()  # held by the first replica's open transaction
            first.commit()
            assert waiting.result(timeout=10) is False
        second.commit()
    with Session(engine) as later:
        assert claim(later, now + timedelta(minutes=5))
    engine.dispose()
