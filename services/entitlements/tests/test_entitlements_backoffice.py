"""The back office's product pages as entitlements serves them, over HTTP on the real app (without
Kafka): the list, creating and editing a product and its delivery settings, archiving, a membership's
sections and lessons, a download's files; and that they leave the JSON admin API on the same paths
alone. A customer's access page is in `test_entitlements_backoffice_access.py`."""

from __future__ import annotations

import html
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from delivery_support import ADMIN_TOKEN, admin_headers, handle, paid, published
from postsale.contracts import ProductArchived, ProductPublished, ProductUpdated
from postsale.entitlements import access_views, handlers, products
from postsale.entitlements.adapters.tables import Lesson, Product, ProductFile, Section
from postsale.entitlements.config import MIGRATIONS_DIR
from postsale.entitlements.entrypoints.app import create_app
from postsale.entitlements.entrypoints.backoffice_files import DRAIN_BYTES
from postsale.runtime.backoffice import submission_token
from postsale.runtime.clock import utcnow
from postsale.runtime.migrations import migrate
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import StaffTokens

pytestmark = pytest.mark.unit
UPLOAD_LIMIT = 2000
ACCOUNTS_LOGIN = "http://127.0.0.1:8003/admin/login?next="


class Browser(TestClient):
    """A staff member's browser on entitlements' back office: asks for pages, and each form it posts
    carries the CSRF token the pages carry (unless `csrf=False`) and a one-time submission token as
    a form that creates something carries (unless `submission=False` or one is given)."""

    def __init__(self, app, role: str | None, tokens: StaffTokens) -> None:
        super().__init__(app, follow_redirects=False, headers={"Accept": "text/html"})
        if role:
            self.cookies.set(STAFF_COOKIE, tokens.token(role))
        self.role = role

    def post(self, url, *, data=None, csrf: bool = True, submission: bool = True, **kwargs):
        if csrf and "csrf_token" not in (data or {}):
            data = {"csrf_token": self.csrf_token(), **(data or {})}
        if submission and "submission" not in (data or {}):
            data = {"submission": submission_token(), **(data or {})}
        return super().post(url, data=data, **kwargs)

    def csrf_token(self) -> str:
        page = self.get("/admin/products/new")
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def tokens() -> StaffTokens:
    return StaffTokens()


@pytest.fixture
def app(tmp_path, monkeypatch, tokens):
    monkeypatch.setenv("ENTITLEMENTS_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ENTITLEMENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'entitlements.db'}")
    monkeypatch.setenv("ENTITLEMENTS_STORAGE_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("ENTITLEMENTS_MAX_UPLOAD_BYTES", str(UPLOAD_LIMIT))
    kept = logging.getLogger().handlers[:]
    app = create_app()  # it sets up JSON logs on the root logger: put pytest's back afterwards
    logging.getLogger().handlers[:] = kept
    migrate(app.state.engine, MIGRATIONS_DIR)
    tokens.install(app)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def engine(app):
    return app.state.engine


@pytest.fixture
def owner(app, tokens) -> Browser:
    return Browser(app, "owner", tokens)


@pytest.fixture
def support(app, tokens) -> Browser:
    return Browser(app, "support", tokens)


def text_of(response) -> str:
    return html.unescape(response.text)


def made(engine, name: str, delivery_type: str = "membership", **settings) -> str:
    with Session(engine) as session:
        product = products.create_product(session, name=name, delivery_type=delivery_type, settings=settings or None)
        session.commit()
        return product.id


def stored(engine, product_id: str) -> Product:
    with Session(engine) as session:
        return session.get(Product, product_id)


def form_token(page: str, action: str) -> str:
    """The one-time submission token in the form of `page` that posts to `action`."""
    form = re.search(rf'<form[^>]*action="{re.escape(action)}".*?</form>', page, re.S).group(0)
    return re.search(r'name="submission" value="([^"]+)"', form).group(1)


def is_missing(response) -> bool:
    """The back office's own 404 page (not JSON, not the customer's)."""
    return response.status_code == 404 and "This page does not exist" in response.text and "data-problem" in \
        response.text


def test_a_stranger_is_sent_to_the_staff_login_and_the_json_api_keeps_its_paths(app, tokens, engine):
    stranger = Browser(app, None, tokens)
    course = made(engine, "Course")
    for path in ("/admin/products", "/admin/products/new", f"/admin/products/{course}/edit",
                 f"/admin/products/{course}/edit/content"):
        sent = stranger.get(path)
        assert sent.status_code == 303 and sent.headers["location"].startswith(ACCOUNTS_LOGIN), path
    assert stranger.post("/admin/products/new", data={"name": "X", "delivery_type": "download"},
                         csrf=False).status_code in (303, 403)
    with Session(engine) as session:
        assert [p.name for p in session.exec(select(Product)).all()] == ["Course"]
    # A program with the bearer token still gets the JSON admin API on the same prefix.
    api = TestClient(app, headers=admin_headers())
    assert api.get(f"/admin/products/{course}").json()["name"] == "Course"
    assert api.get(f"/admin/products/{course}/content").json() == []
    assert api.post("/admin/products", json={"name": "Ebook", "delivery_type": "download"}).status_code == 201


def test_support_creates_a_product_that_is_listed_and_published(support, engine):
    listing = support.get("/admin/products")
    assert listing.status_code == 200 and "No products yet" in listing.text
    assert 'aria-current="page">Products<' in listing.text  # the navigation says where the seller is
    form = support.get("/admin/products/new")
    assert form.status_code == 200 and 'name="name"' in form.text and 'value="license_key"' in form.text
    created = support.post("/admin/products/new", data={"name": "  Mug  ", "description": "A big one",
                                                        "delivery_type": "goods"})
    assert created.status_code == 303
    product_id = created.headers["location"].split("/")[3]
    page = support.get(created.headers["location"])
    assert "The product is created" in page.text and 'role="status"' in page.text
    assert "<h1>Mug</h1>" in page.text and "Physical goods" in page.text
    product = stored(engine, product_id)
    assert (product.delivery_type, product.delivery_settings["kind"], product.description) == ("none", "goods",
                                                                                                "A big one")
    [event] = published(engine, ProductPublished)
    assert (event.product_id, event.name) == (product_id, "Mug")
    row = re.search(rf'<tr data-product-id="{product_id}"[^>]*>(.*?)</tr>', support.get("/admin/products").text, re.S)
    assert 'data-status="active"' in row.group(0) and "Physical goods" in row.group(1) and "Active" in row.group(1)


def test_a_product_form_with_bad_input_says_what_to_fix_and_creates_nothing(owner, engine):
    for data, message in (({"name": "", "delivery_type": "download"}, "Enter the name."),
                          ({"name": "A\x00B", "delivery_type": "download"}, "Name cannot hold NUL characters."),
                          ({"name": "x" * 201, "delivery_type": "download"}, "Name can be at most 200 characters."),
                          ({"name": "Ebook", "delivery_type": "teleport"}, "Choose how the product is delivered."),
                          ({"name": "Ebook"}, "Choose how the product is delivered.")):
        refused = owner.post("/admin/products/new", data=data)
        assert refused.status_code == 422 and message in text_of(refused), data
        assert 'role="alert"' in refused.text
    kept = owner.post("/admin/products/new", data={"name": "Ebook", "description": "Mine", "delivery_type": "x"})
    assert 'value="Ebook"' in kept.text and ">Mine</textarea>" in kept.text  # what was typed stays
    for token in ({}, {"submission": "short"}, {"submission": "x" * 30 + "/"}):  # none, or not one the page made
        untokened = owner.post("/admin/products/new", data={"name": "Ebook", "delivery_type": "download", **token},
                               submission=False)
        assert untokened.status_code == 422 and "without its one-time token" in text_of(untokened)
        assert 'value="Ebook"' in untokened.text
    forged = owner.post("/admin/products/new", data={"name": "Ebook", "delivery_type": "download"}, csrf=False)
    assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")
    assert "did not come from this site" in text_of(forged)
    # A form the app cannot read at all (a file where text goes) is a page too, not JSON.
    unreadable = owner.post("/admin/products/new", data={"delivery_type": "download"},
                            files={"name": ("name.txt", b"Ebook", "text/plain")})
    assert unreadable.status_code == 422 and unreadable.headers["content-type"].startswith("text/html")
    assert "That form could not be read" in text_of(unreadable)
    with Session(engine) as session:
        assert session.exec(select(Product)).all() == []


def test_the_list_pages_fifty_at_a_time_with_archived_products_last(owner, engine):
    ids = [made(engine, f"Product {n:02}", "download") for n in range(products.PAGE_SIZE + 2)]
    with Session(engine) as session:
        products.archive_product(session, ids[-1])
        session.commit()
    first = owner.get("/admin/products").text
    assert first.count("data-product-id=") == products.PAGE_SIZE and 'rel="next"' in first
    assert "52 products" in first and 'data-status="archived"' not in first
    second = owner.get("/admin/products", params={"page": "2"}).text
    assert second.count("data-product-id=") == 2 and 'rel="prev"' in second and 'rel="next"' not in second
    assert f'data-product-id="{ids[-1]}" data-status="archived"' in second
    for page in ("0", "x", "²", "9" * 40):  # not a page number: the first page, or an empty one, never an error
        assert owner.get("/admin/products", params={"page": page}).status_code == 200


def test_editing_the_name_publishes_it_and_bad_input_changes_nothing(support, engine):
    course = made(engine, "Course", description="Old")
    page = support.get(f"/admin/products/{course}/edit")
    assert page.status_code == 200 and 'value="Course"' in page.text
    assert "0 sections, 0 lessons" in page.text and f"/admin/products/{course}/edit/content" in page.text
    saved = support.post(f"/admin/products/{course}/edit", data={"name": "Course 2", "description": "New"})
    assert saved.status_code == 303
    assert "The name and description are saved" in support.get(saved.headers["location"]).text
    assert (stored(engine, course).name, stored(engine, course).description) == ("Course 2", "New")
    [update] = published(engine, ProductUpdated)
    assert (update.name, update.description, update.delivery_type) == ("Course 2", "New", "membership")
    refused = support.post(f"/admin/products/{course}/edit", data={"name": " ", "description": "Other"})
    assert refused.status_code == 422 and "Enter the name." in text_of(refused) and ">Other</textarea>" in refused.text
    assert stored(engine, course).description == "New"
    assert is_missing(support.get("/admin/products/prod_nope/edit"))
    assert is_missing(support.post("/admin/products/prod_nope/edit", data={"name": "X"}))


def test_the_delivery_settings_of_each_type_are_saved_or_refused_with_a_message(owner, engine):
    app_key = made(engine, "Editor", "license_key")
    saved = owner.post(f"/admin/products/{app_key}/edit/delivery", data={
        "activation_limit": "3", "expires_days": "", "prefix": "edit"})
    assert saved.status_code == 303
    assert stored(engine, app_key).delivery_settings == {"activation_limit": 3, "expires_days": None,
                                                         "prefix": "EDIT"}
    page = owner.get(saved.headers["location"])
    assert "The delivery settings are saved" in page.text and 'name="activation_limit" type="number" min="1" ' \
        'max="10000" value="3"' in page.text
    for data, message in (({"activation_limit": "0"}, "Activation limit: enter a whole number from 1 to 10000"),
                          ({"activation_limit": "three"}, "Activation limit: enter a whole number"),
                          ({"prefix": "MY-APP"}, "Key prefix: up to 8 letters or digits")):
        refused = owner.post(f"/admin/products/{app_key}/edit/delivery", data=data)
        assert refused.status_code == 422 and message in text_of(refused), data
    assert stored(engine, app_key).delivery_settings["activation_limit"] == 3

    webinar = made(engine, "Live class", "none", kind="service")
    assert owner.post(f"/admin/products/{webinar}/edit/delivery", data={
        "kind": "webinar", "details": "session = 2027-01-05\n\nroom: B"}).status_code == 303
    assert stored(engine, webinar).delivery_settings == {"kind": "webinar",
                                                         "details": {"session": "2027-01-05", "room": "B"}}
    assert "A registration" in owner.get(f"/admin/products/{webinar}/edit").text
    odd = owner.post(f"/admin/products/{webinar}/edit/delivery", data={"kind": "webinar", "details": "no separator"})
    assert odd.status_code == 422 and "line 1 is not" in odd.text

    ebook = made(engine, "Ebook", "download")
    assert owner.post(f"/admin/products/{ebook}/edit/delivery", data={"download_limit": "5"}).status_code == 303
    assert stored(engine, ebook).delivery_settings == {"download_limit": 5}


def test_archiving_hides_a_product_from_offers_but_customers_keep_it(support, engine):
    course = made(engine, "Course")
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), utcnow())
    page = support.get(f"/admin/products/{course}/edit").text
    assert "Customers who have it keep it" in page and "Archive the product" in page
    archived = support.post(f"/admin/products/{course}/edit/archive")
    assert archived.status_code == 303
    assert "new offers cannot grant it" in support.get(archived.headers["location"]).text
    assert f'data-product-id="{course}" data-status="archived"' in support.get("/admin/products").text
    [event] = published(engine, ProductArchived)
    assert event.product_id == course
    with Session(engine) as session:
        [access] = access_views.customer_access(session, "cus_ann")
        assert access.available  # nothing changed for the customer
    assert support.post(f"/admin/products/{course}/edit/archive").status_code == 303
    assert len(published(engine, ProductArchived)) == 1  # archiving again changes nothing

    unarchived = support.post(f"/admin/products/{course}/edit/unarchive")
    assert "active again" in support.get(unarchived.headers["location"]).text
    assert stored(engine, course).archived_at is None
    [back] = published(engine, ProductUpdated)  # the whole state, for readers of the compacted topic
    assert (back.product_id, back.name) == (course, "Course")


def test_a_membership_gets_sections_and_lessons_that_can_be_edited_and_removed(support, engine):
    course = made(engine, "Course")
    assert "No sections yet" in support.get(f"/admin/products/{course}/edit/content").text
    empty = support.post(f"/admin/products/{course}/edit/content/sections", data={"title": ""})
    assert empty.status_code == 422 and "Enter the title." in empty.text
    added = support.post(f"/admin/products/{course}/edit/content/sections", data={"title": "Week 1"})
    assert added.status_code == 303
    with Session(engine) as session:
        section = session.exec(select(Section)).one()
    lessons = f"/admin/products/{course}/edit/content/sections/{section.id}/lessons"
    bad = support.post(lessons, data={"title": "Intro", "video_url": "javascript:alert(1)", "drip_days": "2"})
    assert bad.status_code == 422 and "Video link: must be an http or https URL" in text_of(bad)
    assert 'value="javascript:alert(1)"' in bad.text and "<details open>" in bad.text
    late = support.post(lessons, data={"title": "Intro", "drip_days": "-1"})
    assert late.status_code == 422 and "Opens after (days): enter a whole number from 0 to 3650" in text_of(late)
    added = support.post(lessons, data={"title": "Intro", "body": "Hello", "video_url": "https://v.example/1",
                                        "drip_days": "2"})
    assert added.status_code == 303
    page = support.get(added.headers["location"])
    assert "The lesson is added" in page.text and "2 days after access began" in page.text and "video" in page.text
    with Session(engine) as session:
        lesson = session.exec(select(Lesson)).one()
    assert (lesson.title, lesson.body, lesson.drip_days, lesson.section_id) == ("Intro", "Hello", 2, section.id)

    edit = f"/admin/products/{course}/edit/content/lessons/{lesson.id}"
    assert 'value="https://v.example/1"' in support.get(edit).text
    assert support.post(edit, data={"title": "Welcome", "body": "Hi", "video_url": "",
                                    "audio_url": "https://a.example/1", "drip_days": "", "section_id": section.id,
                                    "position": "1"}).status_code == 303
    with Session(engine) as session:
        lesson = session.get(Lesson, lesson.id)
    assert (lesson.title, lesson.video_url, lesson.audio_url, lesson.drip_days) == ("Welcome", None,
                                                                                   "https://a.example/1", None)
    wrong_section = support.post(edit, data={"title": "Welcome", "section_id": "sec_elsewhere"})
    assert wrong_section.status_code == 422 and "choose one of this product's sections" in text_of(wrong_section)
    renamed = support.post(f"/admin/products/{course}/edit/content/sections/{section.id}",
                           data={"title": "Week one", "position": "3"})
    assert renamed.status_code == 303
    page = support.get(renamed.headers["location"]).text
    assert "Week one" in page and "This removes the section and its 1 lesson" in page

    assert support.post(f"{edit}/remove").status_code == 303
    assert support.post(f"/admin/products/{course}/edit/content/sections/{section.id}/remove").status_code == 303
    with Session(engine) as session:
        assert session.exec(select(Section)).all() == [] and session.exec(select(Lesson)).all() == []
    assert support.post(f"{edit}/remove").status_code == 404
    ebook = made(engine, "Ebook", "download")
    assert is_missing(support.get(f"/admin/products/{ebook}/edit/content"))


def test_a_creating_form_posted_twice_creates_once_and_answers_as_the_first_did(support, engine):
    new = support.get("/admin/products/new").text
    token = form_token(new, "/admin/products/new")
    assert token != form_token(support.get("/admin/products/new").text, "/admin/products/new")  # one per form shown
    form = {"name": "Mug", "delivery_type": "goods", "submission": token}
    first, again = support.post("/admin/products/new", data=form), support.post("/admin/products/new", data=form)
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    assert "The product is created" in support.get(again.headers["location"]).text
    with Session(engine) as session:
        assert [p.name for p in session.exec(select(Product)).all()] == ["Mug"]
    assert len(published(engine, ProductPublished)) == 1
    other = support.post("/admin/products/new", data={"name": "Mug", "delivery_type": "goods"})  # a new form
    assert other.headers["location"] != first.headers["location"]

    course = made(engine, "Course")
    content = f"/admin/products/{course}/edit/content"
    add_section = f"{content}/sections"
    section_form = {"title": "Week 1", "submission": form_token(support.get(content).text, add_section)}
    assert [support.post(add_section, data=section_form).status_code for _ in range(2)] == [303, 303]
    with Session(engine) as session:
        [section] = session.exec(select(Section)).all()
    add_lesson = f"{content}/sections/{section.id}/lessons"
    lesson_form = {"title": "Intro", "submission": form_token(support.get(content).text, add_lesson)}
    assert [support.post(add_lesson, data=lesson_form).status_code for _ in range(2)] == [303, 303]
    with Session(engine) as session:
        assert [lesson.title for lesson in session.exec(select(Lesson)).all()] == ["Intro"]
    untokened = support.post(add_lesson, data={"title": "Outro"}, submission=False)
    assert untokened.status_code == 422 and "without its one-time token" in text_of(untokened)
    assert 'value="Outro"' in untokened.text


def test_a_download_gets_files_uploaded_within_the_limit_and_removed(support, engine, tmp_path):
    ebook = made(engine, "Ebook", "download")
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, purchase_id="pur_1", delivery_type="download"),
           utcnow())  # bought before the file exists: the delivery waits for it
    page = support.get(f"/admin/products/{ebook}/edit").text
    assert "No file yet" in page and 'enctype="multipart/form-data"' in page and "up to 2 KB" in page
    form_start = page.index("data-upload")
    assert page.index('name="csrf_token"', form_start) < page.index('name="file"')
    assert page.index('name="submission"', form_start) < page.index('name="file"')

    upload = f"/admin/products/{ebook}/edit/files"
    uploaded = support.post(upload, files={"file": ("../The Book.pdf", b"%PDF-1.7 the book", "application/pdf")})
    assert uploaded.status_code == 303
    page = support.get(uploaded.headers["location"]).text
    assert "The file is uploaded" in page and "The Book.pdf" in page and "17 bytes" in page
    with Session(engine) as session:
        file = session.exec(select(ProductFile)).one()
    assert (tmp_path / "files" / ebook / file.id).read_bytes() == b"%PDF-1.7 the book"

    too_big = support.post(upload, files={"file": ("big.bin", b"x" * (UPLOAD_LIMIT + 1), "application/octet-stream")})
    assert too_big.status_code == 413 and "larger than the limit of 2 KB" in too_big.text
    assert 'data-upload-error' in too_big.text and "<h1>Ebook</h1>" in too_big.text
    huge = support.post(upload, files={"file": ("huge.bin", b"x" * (UPLOAD_LIMIT + DRAIN_BYTES + 1), "text/plain")})
    assert huge.status_code == 413 and "larger than the limit of 2 KB" in huge.text  # refused before reading it
    nothing = support.post(upload, files={"file": ("", b"", "application/octet-stream")})
    assert nothing.status_code == 422 and "Choose a file to upload" in nothing.text
    untokened = support.post(upload, files={"file": ("twice.pdf", b"%PDF", "application/pdf")}, submission=False)
    assert untokened.status_code == 422 and "without its one-time token" in text_of(untokened)
    forged = support.post(upload, files={"file": ("evil.pdf", b"%PDF", "application/pdf")}, csrf=False)
    assert forged.status_code == 403 and "did not come from this site" in text_of(forged)
    late_token = support.post(upload, files=[("file", ("late.pdf", b"%PDF", "application/pdf")),
                                             ("csrf_token", (None, support.csrf_token()))], csrf=False)
    assert late_token.status_code == 403  # the token must come before the file
    course = made(engine, "Course")
    assert support.post(f"/admin/products/{course}/edit/files",
                        files={"file": ("a.pdf", b"a", "application/pdf")}).status_code == 409
    with Session(engine) as session:
        assert [f.name for f in session.exec(select(ProductFile)).all()] == ["The Book.pdf"]
    assert sorted(p.name for p in (tmp_path / "files" / ebook).iterdir()) == [file.id]  # no .part left

    remove = f"/admin/products/{ebook}/edit/files/{file.id}/remove"
    assert support.post(remove, csrf=False).status_code == 403
    removed = support.post(remove)
    assert removed.status_code == 303 and "its links stop working" in support.get(removed.headers["location"]).text
    assert not (tmp_path / "files" / ebook / file.id).exists()
    assert support.post(remove).status_code == 404

    # The same form posted twice (a double click, a reload after posting) stores the file once.
    once = {"submission": form_token(support.get(f"/admin/products/{ebook}/edit").text, upload)}
    book = {"file": ("The Book.pdf", b"%PDF-1.7 the book", "application/pdf")}
    twice = support.post(upload, data=once, files=book), support.post(upload, data=once, files=book)
    assert [r.status_code for r in twice] == [303, 303]
    assert "The file is uploaded" in support.get(twice[1].headers["location"]).text
    with Session(engine) as session:
        [again] = session.exec(select(ProductFile).where(ProductFile.removed_at.is_(None))).all()
    assert [p.name for p in (tmp_path / "files" / ebook).iterdir()] == [again.id]


def test_renaming_publishes_only_a_change_and_an_archived_product_waits_for_unarchiving(engine):
    course = made(engine, "Course")
    with Session(engine) as session:
        products.update_product(session, course, name="Course", description="")  # as it was: nothing to tell
        products.archive_product(session, course)
        products.update_product(session, course, name="Course 2", description="Renamed")
        session.commit()
    assert published(engine, ProductUpdated) == []  # offers cannot grant it: readers learn of it when it is back
    with Session(engine) as session:
        products.unarchive_product(session, course)
        products.unarchive_product(session, course)  # active already: nothing more
        session.commit()
    [back] = published(engine, ProductUpdated)
    assert (back.name, back.description) == ("Course 2", "Renamed")
    with Session(engine) as session:
        with pytest.raises(products.UnknownProduct):
            products.archive_product(session, "prod_missing")
