"""What customers open, over HTTP without Kafka: the library, a lesson and a file each make
`ContentOpened` (at most one per customer, kind and product every few minutes, whichever replica
serves the page), and opening every lesson of a membership makes one `ProductCompleted`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from delivery_support import CUSTOMER, EMAIL, admin_app, admin_headers, handle, migrated_engine, paid, product, published
from postsale.contracts import ContentOpened, DownloadLinkIssued, ProductCompleted
from postsale.entitlements import activity, handlers
from postsale.entitlements.adapters.storage import LocalFolderStorage
from postsale.entitlements.adapters.tables import Lesson, Product
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.entrypoints import admin_delivery, downloads, pages
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.clock import utcnow

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine, tmp_path):
    app = admin_app(engine, pages.router, downloads.router, admin_delivery.admin_delivery)
    app.state.delivery_settings = DeliverySettings(storage_dir=tmp_path / "files")
    app.state.storage = LocalFolderStorage(tmp_path / "files")
    app.state.activity_throttle = ActivityThrottle()
    app.dependency_overrides[current_customer] = lambda: CustomerSession(CUSTOMER, EMAIL, "sess_1")
    with TestClient(app, follow_redirects=False) as client:
        yield client


def course_with_lessons(client, engine, count: int) -> tuple[str, list[str]]:
    course = product(engine, "Course", "membership")
    section = client.post(f"/admin/products/{course}/sections", headers=admin_headers(), json={"title": "One"}).json()
    lessons = [client.post(f"/admin/products/{course}/sections/{section['id']}/lessons", headers=admin_headers(),
                           json={"title": f"Lesson {n}"}).json()["id"] for n in range(count)]
    # Bought now: the pages ask the wall clock whether a dripped lesson has opened.
    handle(engine, handlers.grant_access_for_purchase, paid(course, at=utcnow()), utcnow())
    return course, lessons


def opened(engine) -> list[tuple]:
    return [(e.customer_id, e.kind, e.product_id, e.lesson_id, e.file_name) for e in published(engine, ContentOpened)]


def test_the_library_and_a_lesson_are_published_once_per_few_minutes(client, engine):
    course, [first, second] = course_with_lessons(client, engine, 2)
    for _ in range(3):
        assert client.get("/library").status_code == 200
    assert client.get(f"/library/products/{course}/lessons/{first}").status_code == 200
    assert client.get(f"/library/products/{course}/lessons/{second}").status_code == 200  # same product: throttled
    assert opened(engine) == [(CUSTOMER, "library_visit", None, None, None), (CUSTOMER, "lesson", course, first, None)]


def test_opening_every_lesson_completes_the_product_once(client, engine):
    course, lessons = course_with_lessons(client, engine, 3)
    for lesson in lessons[:2] + lessons[:2]:
        client.get(f"/library/products/{course}/lessons/{lesson}")
    assert published(engine, ProductCompleted) == []
    for _ in range(2):
        client.get(f"/library/products/{course}/lessons/{lessons[2]}")
    [completed] = published(engine, ProductCompleted)
    assert (completed.customer_id, completed.email, completed.product_id, completed.product_name, completed.lessons) \
        == (CUSTOMER, EMAIL, course, "Course", 3)


def test_a_locked_lesson_is_not_opened_and_completes_nothing(client, engine):
    course, [first, later] = course_with_lessons(client, engine, 2)
    client.patch(f"/admin/products/{course}/lessons/{later}", headers=admin_headers(), json={"drip_days": 7})
    assert client.get(f"/library/products/{course}/lessons/{first}").status_code == 200
    assert client.get(f"/library/products/{course}/lessons/{later}").status_code == 403
    assert published(engine, ProductCompleted) == []
    assert [kind for _, kind, *_ in opened(engine)] == ["lesson"]


def test_a_completion_missed_between_two_requests_is_made_once_at_the_next_opening(engine):
    """Two lessons opened at once: whichever request checks last sees both openings; the key keeps
    a second check from completing the product again."""
    with Session(engine) as session:
        course = Product(id="prod_c", name="Course", delivery_type="membership")
        lessons = [Lesson(id=f"les_{n}", section_id="sec", product_id=course.id, title=str(n)) for n in range(2)]
        session.add_all([course, *lessons])
        session.commit()
        now, throttle = utcnow(), ActivityThrottle()
        for lesson in lessons:
            activity.lesson_opened(session, throttle, customer_id=CUSTOMER, product=course, lesson=lesson, now=now)
        session.commit()
        done = [activity.complete_product(session, customer_id=CUSTOMER, email=EMAIL, product=course,
                                          now=now + timedelta(seconds=n)) for n in range(2)]
        session.commit()
    assert done == [True, False] and len(published(engine, ProductCompleted)) == 1


def test_a_download_by_the_library_or_the_emailed_link_is_published_once_per_few_minutes(client, engine):
    ebook = product(engine, "Ebook", "download")
    client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                files={"file": ("book.pdf", b"%PDF-1.7", "application/pdf")})
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, customer_id="cus_bob", email="bob@example.com"),
           utcnow())
    [emailed] = published(engine, DownloadLinkIssued)
    link = emailed.url.rsplit("/", 1)[1]
    assert client.get(f"/downloads/{link}").status_code == 200  # from the email: counts for the grant's customer
    assert client.get(f"/downloads/{link}").status_code == 200
    assert client.get("/downloads/not-a-link").status_code == 404  # refused: nothing opened
    assert opened(engine) == [("cus_bob", "download", ebook, None, "book.pdf")]
