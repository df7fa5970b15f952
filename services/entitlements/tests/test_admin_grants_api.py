"""The admin API other teams rely on: `POST /admin/grants` and `POST /admin/revocations` as the seller's
manual grant and revoke, and products of every delivery type, `license_key` included, with their
settings. On SQLite, with the clock in the test's hand for what happens later."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from delivery_support import (CUSTOMER, EMAIL, T0, Clock, admin_app, admin_headers, handle, migrated_engine, paid,
                              published)
from postsale.contracts import AccessGranted, AccessRevoked, ProductPublished
from postsale.entitlements import access_views, changes, handlers
from postsale.entitlements.adapters.tables import AccessReview
from postsale.entitlements.entrypoints import admin
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import Scheduler

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def api(engine):
    with TestClient(admin_app(engine, admin.admin), headers=admin_headers()) as client:
        yield client


def test_a_license_key_product_is_made_with_its_settings_and_published(api, engine):
    made = api.post("/admin/products", json={"name": "Editor Pro", "delivery_type": "license_key",
                                             "license_key": {"activation_limit": 3, "prefix": "EDIT"}})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["delivery_type"], body["license_key"]["activation_limit"], body["license_key"]["prefix"]) == (
        "license_key", 3, "EDIT")
    assert api.get(f"/admin/products/{body['id']}").json() == body
    [event] = published(engine, ProductPublished)
    # A reader of contracts 1.0 sees the nearest kind it knows; newer readers the exact one.
    assert (event.product_id, event.delivery_type, event.delivery_kind) == (body["id"], "download", "license_key")


def test_every_delivery_type_is_accepted_and_settings_must_match_it(api):
    for delivery_type in ("membership", "integration", "download", "license_key", "none"):
        assert api.post("/admin/products", json={"name": delivery_type, "delivery_type": delivery_type}
                        ).status_code == 201
    wrong = api.post("/admin/products", json={"name": "Ebook", "delivery_type": "download",
                                              "integration": {"endpoint_url": "https://members.example.com/hook"}})
    assert wrong.status_code == 422 and "integration: not a setting of a download product" in wrong.text
    bad_url = api.post("/admin/products", json={"name": "Club", "delivery_type": "integration",
                                                "integration": {"endpoint_url": "ftp://members.example.com"}})
    assert bad_url.status_code == 422 and "http or https" in bad_url.text


def test_a_misspelt_delivery_setting_is_refused_and_the_saved_one_kept(api):
    ebook = api.post("/admin/products", json={"name": "Ebook", "delivery_type": "download",
                                              "download": {"download_limit": 3}}).json()["id"]
    for body, problem in (({"download": {"download_limt": 5}}, "download: download_limt: not a setting"),
                          ({"downlaod": {"download_limit": 5}}, "Extra inputs are not permitted"),
                          ({"download": {"download_limit": True}}, "download.download_limit: Input should be a valid integer")):
        refused = api.put(f"/admin/products/{ebook}/delivery", json=body)
        assert refused.status_code == 422 and problem in refused.text, (body, refused.text)
    assert api.get(f"/admin/products/{ebook}").json()["download"] == {"download_limit": 3}


def test_an_integration_gets_a_standard_webhooks_secret_unless_the_seller_gives_one(api):
    made = api.post("/admin/products", json={"name": "Club", "delivery_type": "integration",
                                             "integration": {"endpoint_url": "https://members.example.com/hook"}})
    secret = made.json()["integration"]["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    changed = api.put(f"/admin/products/{made.json()['id']}/delivery",
                      json={"integration": {"endpoint_url": "https://new.example.com/hook", "secret": secret}})
    assert changed.json()["integration"] == {"endpoint_url": "https://new.example.com/hook", "secret": secret,
                                             "access_url": None}
    refused = api.put(f"/admin/products/{made.json()['id']}/delivery",
                      json={"integration": {"endpoint_url": "https://x.example.com", "secret": "whsec_c2hvcnQ="}})
    assert refused.status_code == 422 and "24 to 64 bytes" in refused.text


def test_the_seller_grants_with_an_end_and_revokes_through_the_api_billing_untouched(api, engine):
    course = api.post("/admin/products", json={"name": "Course", "delivery_type": "membership"}).json()["id"]
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)
    ends = utcnow() + timedelta(days=400)  # the API refuses an end in the past, by the wall clock

    granted = api.post("/admin/grants", json={"customer_id": CUSTOMER, "product_id": course,
                                              "reason": "speaker at the conference", "expires_at": ends.isoformat()})
    assert granted.status_code == 201, granted.text
    assert (granted.json()["source"], granted.json()["note"], granted.json()["expires_at"]) == (
        "seller", "speaker at the conference", ends.isoformat().replace("+00:00", "Z"))

    revoked = api.post("/admin/revocations", json={"customer_id": CUSTOMER, "product_id": course,
                                                   "reason": "asked to leave"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["available"] is False
    assert sorted(g["status"] for g in revoked.json()["grants"]) == ["revoked", "revoked"]
    ledger = api.get(f"/admin/access/customers/{CUSTOMER}/ledger").json()
    assert [(e["action"], e["reason"], e["actor"], e["note"]) for e in ledger] == [
        ("grant", "purchase", "customer", None),
        ("grant", "granted by the seller", "seller", "speaker at the conference"),
        ("revoke", "revoked by the seller", "seller", "asked to leave"),
        ("revoke", "revoked by the seller", "seller", "asked to leave")]
    again = api.post("/admin/revocations", json={"customer_id": CUSTOMER, "product_id": course, "reason": "again"})
    assert again.status_code == 200 and len(api.get(f"/admin/access/customers/{CUSTOMER}/ledger").json()) == 4
    assert [type(e) for e in published(engine) if isinstance(e, (AccessGranted, AccessRevoked))] == [
        AccessGranted, AccessGranted, AccessRevoked, AccessRevoked]


def test_a_revocation_as_of_a_date_keeps_access_until_then(api, engine):
    course = api.post("/admin/products", json={"name": "Course", "delivery_type": "membership"}).json()["id"]
    api.post("/admin/grants", json={"customer_id": CUSTOMER, "product_id": course, "reason": "beta tester",
                                    "email": EMAIL})
    ends = utcnow() + timedelta(days=7)
    answer = api.post("/admin/revocations", json={"customer_id": CUSTOMER, "product_id": course,
                                                  "reason": "beta over", "expires_at": ends.isoformat()})
    assert (answer.json()["available"], answer.json()["until"]) == (True, ends.isoformat().replace("+00:00", "Z"))

    clock = Clock(ends + timedelta(seconds=1))
    Scheduler(engine, changes.REVIEWS, AccessReview, handlers.review_access, clock=clock).run_due()
    with Session(engine) as session:
        assert access_views.check_access(session, CUSTOMER, course, clock.now) is None
    assert api.get(f"/admin/access/customers/{CUSTOMER}/ledger").json()[-1]["reason"] == "revoked by the seller"


def test_the_grant_and_revocation_apis_say_what_is_wrong(api):
    course = api.post("/admin/products", json={"name": "Course", "delivery_type": "membership"}).json()["id"]
    unknown_customer = api.post("/admin/grants", json={"customer_id": "cus_new", "product_id": course,
                                                       "reason": "gift"})
    assert unknown_customer.status_code == 422 and "give their email" in unknown_customer.text
    past = api.post("/admin/grants", json={"customer_id": "cus_new", "product_id": course, "reason": "gift",
                                           "email": "new@example.com", "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status_code == 422 and "not in the future" in past.text
    assert api.post("/admin/grants", json={"customer_id": "cus_new", "product_id": "prod_nope",
                                           "reason": "gift", "email": "new@example.com"}).status_code == 404
    assert api.post("/admin/revocations", json={"customer_id": "cus_new", "product_id": course,
                                                "reason": "x"}).status_code == 404
    assert api.post("/admin/grants", json={"customer_id": CUSTOMER, "product_id": course}).status_code == 422
    assert api.post("/admin/grants", headers={"Authorization": "Bearer wrong"},
                    json={"customer_id": CUSTOMER, "product_id": course, "reason": "x"}).status_code == 401
