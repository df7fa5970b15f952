"""The delivery routes over HTTP, without Kafka: a seller's upload streamed to storage (and refused past
the limit), the download pages, the public license API's answers and rate limit, and what the library
shows for each delivery type."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from delivery_support import (CUSTOMER, EMAIL, admin_app, admin_headers, form_token, handle, migrated_engine, paid,
                              product, published)
from postsale.contracts import DownloadLinkIssued
from postsale.entitlements import handlers
from postsale.entitlements.adapters.storage import LocalFolderStorage
from postsale.entitlements.adapters.tables import Grant, LicenseKey, ProductFile
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.entrypoints import admin, admin_delivery, downloads, licenses, pages
from postsale.entitlements.entrypoints.app import add_problem_pages
from postsale.entitlements.entrypoints.licenses import RateLimiter
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.clock import utcnow

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def app(engine, tmp_path):
    app = admin_app(engine, pages.router, downloads.router, licenses.router, admin.admin, admin_delivery.admin_delivery)
    app.state.delivery_settings = DeliverySettings(storage_dir=tmp_path / "files", max_upload_bytes=1000)
    app.state.storage = LocalFolderStorage(tmp_path / "files")
    app.dependency_overrides[current_customer] = lambda: CustomerSession(CUSTOMER, EMAIL, "sess_1")
    return app


@pytest.fixture
def client(app):
    with TestClient(app, follow_redirects=False) as client:
        yield client


def bought(engine, product_id: str, purchase_id: str = "pur_1") -> None:
    # Bought now: the pages ask the wall clock whether a dripped lesson has opened.
    handle(engine, handlers.grant_access_for_purchase, paid(product_id, purchase_id=purchase_id, at=utcnow()),
           utcnow())


def test_an_upload_is_streamed_to_storage_and_a_waiting_customer_gets_the_link(client, engine, tmp_path):
    ebook = product(engine, "Ebook", "download")
    bought(engine, ebook)  # no file yet: the delivery waits
    uploaded = client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                           files={"file": ("../../The Book.pdf", b"%PDF-1.7 the book", "application/pdf")},
                           data={"note": "ignored"})
    assert uploaded.status_code == 201, uploaded.text
    file = uploaded.json()
    assert (file["name"], file["size"], file["content_type"]) == ("The Book.pdf", 17, "application/pdf")
    assert (tmp_path / "files" / ebook / file["id"]).read_bytes() == b"%PDF-1.7 the book"
    assert [f["id"] for f in client.get(f"/admin/products/{ebook}/files", headers=admin_headers()).json()] == [
        file["id"]]
    deliveries = client.get(f"/admin/products/{ebook}/deliveries", headers=admin_headers()).json()["deliveries"]
    assert deliveries[0]["next_attempt_at"] is not None  # due at once, for the scheduler

    removed = client.delete(f"/admin/products/{ebook}/files/{file['id']}", headers=admin_headers())
    assert removed.status_code == 204 and not (tmp_path / "files" / ebook / file["id"]).exists()


def test_an_uploads_name_keeps_its_letters_and_quotes_as_a_browser_sends_them(client, engine):
    ebook = product(engine, "Ebook", "download")
    # As a browser writes it: the name in UTF-8, a '"' as %22 (httpx does the same).
    uploaded = client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                           files={"file": ('Übungen "final" – 2ª edição.pdf', b"%PDF-1.7", "application/pdf")})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["name"] == 'Übungen "final" – 2ª edição.pdf'


def test_an_upload_past_the_limit_or_not_multipart_is_refused_and_nothing_is_kept(client, engine, tmp_path):
    ebook = product(engine, "Ebook", "download")
    too_big = client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                          files={"file": ("big.bin", b"x" * 1001, "application/octet-stream")})
    assert too_big.status_code == 413 and "1000 bytes" in too_big.text
    assert list((tmp_path / "files").rglob("*")) == [tmp_path / "files" / ebook]  # no file, no .part
    raw = client.post(f"/admin/products/{ebook}/files", headers={**admin_headers(), "content-type": "application/pdf"},
                      content=b"%PDF")
    assert raw.status_code == 415
    no_file = client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                          files={"file": (None, b"a field, not a file")})
    assert no_file.status_code == 422 and "field named `file`" in no_file.text
    course = product(engine, "Course", "membership")
    assert client.post(f"/admin/products/{course}/files", headers=admin_headers(),
                       files={"file": ("a.pdf", b"a", "application/pdf")}).status_code == 409
    with Session(engine) as session:
        assert session.exec(select(ProductFile)).all() == []


def test_an_upload_sent_again_with_its_idempotency_key_stores_one_file(client, engine, tmp_path):
    ebook, guide = product(engine, "Ebook", "download"), product(engine, "Guide", "download")
    book = {"file": ("book.pdf", b"%PDF-1.7 the book", "application/pdf")}
    keyed = {**admin_headers(), "Idempotency-Key": "upload book.pdf 1"}
    first = client.post(f"/admin/products/{ebook}/files", headers=keyed, files=book)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = client.post(f"/admin/products/{ebook}/files", headers=keyed, files=book)  # a retry after a timeout
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()

    other_file = client.post(f"/admin/products/{ebook}/files", headers=keyed,
                             files={"file": ("other.pdf", b"%PDF-1.7 another book", "application/pdf")})
    assert other_file.status_code == 422 and "used for another upload" in other_file.text
    other_product = client.post(f"/admin/products/{guide}/files", headers=keyed, files=book)
    assert other_product.status_code == 422 and "used for another upload" in other_product.text
    too_long = client.post(f"/admin/products/{ebook}/files", files=book,
                           headers={**admin_headers(), "Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.text

    with Session(engine) as session:
        assert [f.id for f in session.exec(select(ProductFile)).all()] == [first.json()["id"]]
    assert sorted(p.name for p in (tmp_path / "files").rglob("*") if p.is_file()) == [first.json()["id"]]


def test_the_library_click_downloads_a_counted_file_and_refusals_lead_back_to_the_library(client, engine):
    ebook = product(engine, "Ebook", "download", download_limit=1)
    file_id = client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                          files={"file": ("book.pdf", b"%PDF-1.7", "application/pdf")}).json()["id"]
    bought(engine, ebook)
    library = client.get("/library")
    assert f'data-download-file="{file_id}"' in library.text and "1 of 1 downloads left" in library.text
    with Session(engine) as session:
        grant = session.exec(select(Grant)).one()

    assert client.post(f"/library/downloads/{grant.id}/{file_id}").status_code == 403  # no CSRF token
    token = {"csrf_token": form_token(client)}
    clicked = client.post(f"/library/downloads/{grant.id}/{file_id}", data=token)
    assert clicked.status_code == 303 and clicked.headers["location"].startswith("/downloads/")
    got = client.get(clicked.headers["location"])
    assert (got.status_code, got.content, got.headers["x-downloads-left"]) == (200, b"%PDF-1.7", "0")
    assert 'attachment; filename*=UTF-8\'\'book.pdf' == got.headers["content-disposition"]

    again = client.get(clicked.headers["location"])
    assert again.status_code == 403 and 'data-download-refused="limit"' in again.text
    assert "Go to your library" in again.text
    assert client.post(f"/library/downloads/{grant.id}/{file_id}", data=token).status_code == 403
    unknown = client.get("/downloads/nothing-like-a-token")
    assert unknown.status_code == 404 and 'data-download-refused="unknown"' in unknown.text


def test_an_expired_link_says_so_and_shows_the_way_to_the_library(client, engine):
    ebook = product(engine, "Ebook", "download")
    client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                files={"file": ("book.pdf", b"%PDF", "application/pdf")})
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, purchase_id="pur_1"), utcnow() - timedelta(days=2))
    [issued] = published(engine, DownloadLinkIssued)  # its link lived 24 hours, two days ago
    expired = client.get("/downloads/" + issued.url.rsplit("/", 1)[1])
    assert expired.status_code == 410
    assert "This link expired" in expired.text and 'href="http://127.0.0.1:8002/library"' in expired.text


def test_the_license_api_answers_in_json_and_limits_requests(client, engine, app):
    editor = product(engine, "Editor", "license_key", activation_limit=1)
    bought(engine, editor)
    with Session(engine) as session:
        key = session.exec(select(LicenseKey)).one().key
    assert f"<code data-license-key>{key}</code>" in client.get("/library").text

    valid = client.post("/licenses/validate", json={"key": key})
    assert (valid.status_code, valid.json()["valid"], valid.json()["status"]) == (200, True, "active")
    activated = client.post("/licenses/activate", json={"key": key, "label": "laptop"})
    assert activated.status_code == 201 and activated.json()["license"]["activations"] == 1
    full = client.post("/licenses/activate", json={"key": key, "label": "desktop"})
    assert full.status_code == 409
    assert full.json()["error"] == "activation_limit_reached" and full.json()["license"]["activations"] == 1
    activation_id = activated.json()["activation_id"]
    assert client.post("/licenses/validate", json={"key": key, "activation_id": activation_id}).status_code == 200
    assert client.post("/licenses/deactivate", json={"key": key, "activation_id": activation_id}).json()[
        "activations"] == 0
    missing = client.post("/licenses/validate", json={"key": "NOPE-NOPE-NOPE"})
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert client.post("/licenses/activate", json={"key": key}).status_code == 422

    app.state.license_limits = licenses.LicenseLimits(DeliverySettings(license_requests_per_key=2))
    assert [client.post("/licenses/validate", json={"key": key}).status_code for _ in range(3)] == [200, 200, 429]
    limited = client.post("/licenses/validate", json={"key": key.lower()})  # the same key, however written
    assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert client.post("/licenses/validate", json={"key": "OTHER-KEY-0000"}).status_code == 404  # another key


def test_the_rate_limiter_counts_a_sliding_minute_per_name():
    limiter = RateLimiter(limit=2, window=60)
    assert [limiter.wait("a", now=t) for t in (0, 1)] == [0, 0]
    assert limiter.wait("a", now=2) == pytest.approx(58)
    assert limiter.wait("b", now=2) == 0
    assert limiter.wait("a", now=60.5) == 0  # the first request left the window


def test_the_library_shows_what_each_delivery_type_gives(client, engine):
    course = product(engine, "Course", "membership")
    club = product(engine, "Club", "integration", endpoint_url="https://members.example.com/hook",
                   access_url="https://members.example.com/login")
    seat = product(engine, "Seat", "none")
    for n, product_id in enumerate((course, club, seat)):
        bought(engine, product_id, f"pur_{n}")
    page = client.get("/library").text
    assert f'href="/library/products/{course}" data-open-membership' in page
    assert 'href="https://members.example.com/login" rel="noopener" data-open-integration' in page
    assert "Delivered outside this library" in page


def test_a_membership_opens_its_lessons_as_they_drip(client, engine):
    course = product(engine, "Course", "membership")
    headers = admin_headers()
    section = client.post(f"/admin/products/{course}/sections", headers=headers, json={"title": "Week 1"}).json()
    first = client.post(f"/admin/products/{course}/sections/{section['id']}/lessons", headers=headers,
                        json={"title": "Welcome", "body": "Hello.\n\nStart here.",
                              "video_url": "https://video.example.com/welcome.mp4"}).json()
    later = client.post(f"/admin/products/{course}/sections/{section['id']}/lessons", headers=headers,
                        json={"title": "Week two", "drip_days": 7}).json()
    assert [l["id"] for l in client.get(f"/admin/products/{course}/content", headers=headers).json()[0]["lessons"]] \
        == [first["id"], later["id"]]
    assert client.post(f"/admin/products/{course}/sections/{section['id']}/lessons", headers=headers,
                       json={"title": "x", "video_url": "javascript:alert(1)"}).status_code == 422

    assert client.get(f"/library/products/{course}").status_code == 303  # not bought yet: to the library
    bought(engine, course)
    overview = client.get(f"/library/products/{course}")
    assert f'data-lesson-id="{first["id"]}" data-open="true"' in overview.text
    assert f'data-lesson-id="{later["id"]}" data-open="false"' in overview.text
    lesson = client.get(f"/library/products/{course}/lessons/{first['id']}")
    assert lesson.status_code == 200 and "<p>Start here.</p>" in lesson.text and "data-video" in lesson.text
    locked = client.get(f"/library/products/{course}/lessons/{later['id']}")
    assert locked.status_code == 403 and "This lesson opens on" in locked.text
    # An address that names nothing: a page that says so, not a silent trip to the library.
    for address in ("/library/products/prod_nope", f"/library/products/{course}/lessons/les_nope",
                    f"/library/products/prod_nope/lessons/{first['id']}"):
        missing = client.get(address, headers={"Accept": "text/html"})
        assert missing.status_code == 404 and "no such" in missing.text, address

    changed = client.patch(f"/admin/products/{course}/lessons/{later['id']}", headers=headers,
                           json={"drip_days": None})
    assert changed.status_code == 200 and changed.json()["drip_days"] is None
    assert client.get(f"/library/products/{course}/lessons/{later['id']}").status_code == 200


def test_a_wrong_address_is_a_page_with_the_way_to_the_library_and_apis_keep_json(app, engine):
    add_problem_pages(app)
    with TestClient(app, follow_redirects=False) as client:
        for address in ("/library/products/x/lessons/y/extra", "/downloads/", "/nothing"):
            page = client.get(address)
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), address
            assert "This page does not exist" in page.text and "Go to your library" in page.text
        assert client.get("/admin/nothing").headers["content-type"] == "application/json"
        assert client.get("/api/nothing").json() == {"detail": "Not Found"}
        forged = client.post("/library/downloads/g/f", data={"csrf_token": "forged"})
        assert forged.status_code == 403 and "did not come from this site" in forged.text


def test_every_form_of_the_library_carries_the_csrf_token(client, engine):
    ebook = product(engine, "Ebook", "download")
    client.post(f"/admin/products/{ebook}/files", headers=admin_headers(),
                files={"file": ("book.pdf", b"%PDF-1.7", "application/pdf")})
    bought(engine, ebook)
    page = client.get("/library").text
    forms = page.count("<form")
    assert forms == 2 and page.count('name="csrf_token"') == forms  # the logout and the download button


def test_the_library_names_the_last_day_of_a_grant_that_ends_at_midnight(client, engine):
    course = product(engine, "Course", "membership")
    # "Until 30 Dec" in the back office: access ends at the midnight that starts 31 Dec.
    ends = datetime.combine(utcnow().date() + timedelta(days=30), time(), timezone.utc)
    granted = client.post("/admin/grants", headers=admin_headers(), json={
        "customer_id": CUSTOMER, "email": EMAIL, "product_id": course, "reason": "goodwill",
        "expires_at": ends.isoformat()})
    assert granted.status_code == 201, granted.text
    page = client.get("/library").text
    assert f'until <time datetime="{ends.isoformat()}">{(ends - timedelta(days=1)):%d %b %Y}</time>' in page
