"""The reconciliation report in the back office: the newest run's mismatches with their causes, and
a repair on demand (owner only, after a confirmation) whose report becomes the newest."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from delivery_support import T0, handle, migrated_engine, paid, product
from postsale.entitlements import handlers, reconciliation
from postsale.entitlements.adapters.tables import Grant
from postsale.entitlements.entrypoints import backoffice_operations
from postsale.entitlements.entrypoints.app import add_problem_pages
from postsale.runtime.csrf import add_csrf_cookie
from postsale.runtime.settings import PublicUrls
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import StaffTokens

pytestmark = pytest.mark.unit
REPORT = "/admin/operations/entitlements/reconciliation"


@pytest.fixture
def app(tmp_path, monkeypatch):
    for name in ("checkout", "entitlements", "accounts", "notifications"):
        monkeypatch.setenv(f"POSTSALE_{name.upper()}_URL", f"http://{name}.test")
    monkeypatch.setenv("POSTSALE_COOKIE_SECURE", "false")
    app = FastAPI()
    app.state.engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    app.state.urls = PublicUrls()
    app.state.staff = StaffTokens()
    app.state.staff.install(app)
    app.include_router(backoffice_operations.pages)
    add_problem_pages(app)
    add_csrf_cookie(app)
    yield app
    app.state.engine.dispose()


def browser(app, role: str | None = "owner") -> TestClient:
    client = TestClient(app, base_url="http://entitlements.test", follow_redirects=False,
                        headers={"Accept": "text/html"})
    if role:
        client.cookies.set(STAFF_COOKIE, app.state.staff.token(role))
    return client


def grant_status(app, purchase_id: str) -> str | None:
    with Session(app.state.engine) as session:
        grant = session.exec(select(Grant).where(Grant.purchase_id == purchase_id)).first()
        return grant.status if grant else None


def test_the_report_shows_the_newest_run_and_repair_fixes_what_it_found(app):
    engine = app.state.engine
    course = product(engine, "Course", "membership")
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)
    reconciliation.ensure_scheduled(engine, timedelta(hours=24), T0)
    owner = browser(app)
    empty = owner.get(REPORT)
    assert empty.status_code == 200 and "No reconciliation has run yet" in empty.text
    assert 'aria-current="page">Operations<' in empty.text
    assert 'href="http://entitlements.test/admin/operations/entitlements"' in empty.text

    with Session(engine) as session:  # a hand edit: the paid grant revoked behind the use cases' back
        session.execute(text("UPDATE access_grants SET status = 'revoked', reason = 'oops' WHERE purchase_id = 'pur_1'"))
        session.commit()
    token = re.search(r'name="csrf_token" value="([^"]+)"', empty.text).group(1)
    assert owner.post(f"{REPORT}/repair", data={}).status_code == 403  # no CSRF token
    assert grant_status(app, "pur_1") == "revoked"
    assert "Yes, reconcile and repair now" in empty.text and "<details" in empty.text  # asked first

    repaired = owner.post(f"{REPORT}/repair", data={"csrf_token": token})
    assert repaired.status_code == 303 and "found=" not in repaired.headers["location"]
    report = owner.get(repaired.headers["location"]).text
    assert "Reconciled now: 1 mismatch found, 1 repaired" in report
    # The counts come from the run the address names, never from the address itself.
    for query in ({"done": "repaired", "found": "99", "repaired": "99"}, {"done": "repaired", "run": "run_nope"}):
        assert "Reconciled now" not in owner.get(REPORT, params=query).text
    assert 'data-finding="paid_without_access" data-purchase-id="pur_1"' in report
    assert "the grant is revoked (oops)" in html.unescape(report) and 'data-mismatches="1"' in report
    assert 'href="/admin/access/cus_ann"' in report
    assert grant_status(app, "pur_1") == "active"


def test_a_stranger_goes_to_the_login_and_support_is_refused(app):
    sent = browser(app, role=None).get(REPORT)
    assert sent.status_code == 303 and sent.headers["location"].startswith("http://accounts.test/admin/login?next=")
    support = browser(app, "support")
    refused = support.get(REPORT)
    assert refused.status_code == 403 and "Only the store's owner may do this" in html.unescape(refused.text)
    assert "Yes, reconcile" not in refused.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', refused.text).group(1)
    assert support.post(f"{REPORT}/repair", data={"csrf_token": token}).status_code == 403
