"""The seller's admin API of outgoing webhooks, on the service's app (no broker): endpoints
registered, changed, disabled and removed; deliveries listed with their attempts; dead letters
replayed; bad input refused with a clear 4xx."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from postsale.notifications.config import MIGRATIONS_DIR, WebhookSettings
from postsale.notifications.entrypoints.app import create_app
from postsale.notifications.webhooks import targets
from postsale.notifications.webhooks.sender import Sender
from postsale.runtime.clock import utcnow
from postsale.runtime.migrations import migrate
from postsale.runtime.standard_webhooks import is_valid_secret
from test_webhooks import Clock, SellerEndpoint, publish, purchase, run_until

pytestmark = pytest.mark.unit
TOKEN = "a-token-of-sixteen-or-more"
URL = "https://hooks.seller.test/postsale"


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'notifications.db'}")
    # Production: Postsale is reached over https, so private targets are refused.
    monkeypatch.setenv("POSTSALE_NOTIFICATIONS_URL", "https://notifications.shop.test")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    monkeypatch.delenv("NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS", raising=False)
    app = create_app()
    migrate(app.state.engine, MIGRATIONS_DIR)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def admin(app) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


def create(admin, **body):
    body = {"url": URL, "event_types": ["postsale.purchase.completed"], "alert_emails": ["Ops@Seller.test"], **body}
    return admin.post("/admin/webhook-endpoints", json=body)


def test_a_seller_registers_changes_and_removes_an_endpoint(admin):
    created = create(admin, description="CRM")
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["enabled"] and endpoint["alert_emails"] == ["ops@seller.test"]
    assert endpoint["secret"].startswith("whsec_") and is_valid_secret(endpoint["secret"])

    [listed] = admin.get("/admin/webhook-endpoints").json()
    assert listed["id"] == endpoint["id"] and "secret" not in listed
    assert admin.get(f"/admin/webhook-endpoints/{endpoint['id']}").json()["secret"] == endpoint["secret"]

    changed = admin.patch(f"/admin/webhook-endpoints/{endpoint['id']}", json={
        "event_types": ["postsale.purchase.completed", "postsale.purchase.refunded", "postsale.purchase.refunded"],
        "url": "https://crm.seller.test/in"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["postsale.purchase.completed", "postsale.purchase.refunded"]
    assert changed.json()["url"] == "https://crm.seller.test/in" and changed.json()["description"] == "CRM"

    rotated = admin.post(f"/admin/webhook-endpoints/{endpoint['id']}/rotate-secret").json()["secret"]
    assert rotated != endpoint["secret"] and is_valid_secret(rotated)

    assert admin.delete(f"/admin/webhook-endpoints/{endpoint['id']}").status_code == 204
    assert admin.get(f"/admin/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert admin.get("/admin/webhook-endpoints").json() == []


def test_the_event_types_offered_are_the_public_ones(admin):
    offered = {t["type"] for t in admin.get("/admin/webhook-event-types").json()}
    assert "postsale.purchase.completed" in offered and "postsale.access.revoked" in offered
    assert not offered & {"postsale.login_link.issued", "postsale.password_reset.requested",
                          "postsale.download_link.issued", "postsale.account_setup_link.issued"}


@pytest.mark.parametrize(("body", "says"), [
    ({"event_types": ["postsale.nothing"]}, "unknown event type(s): postsale.nothing"),
    ({"event_types": ["postsale.login_link.issued"]}, "unknown event type(s): postsale.login_link.issued"),
    ({"event_types": []}, "at least 1 item"),
    ({"url": "http://hooks.seller.test/x"}, "must be https"),
    ({"url": "https://127.0.0.1:9000/x"}, "private or loopback"),
    ({"url": "https://192.168.0.10/x"}, "private or loopback"),
    ({"url": "https://" + "a" * 2000 + ".test/"}, "at most 2000 characters"),
    ({"alert_emails": ["not an address"]}, "is not an email address"),
    ({"alert_emails": []}, "nobody would be told"),
    ({"description": "x" * 501}, "at most 500 characters"),
])
def test_bad_input_is_refused_with_a_clear_answer(admin, body, says):
    refused = create(admin, **body)
    assert refused.status_code == 422, refused.text
    assert says in refused.text
    assert admin.get("/admin/webhook-endpoints").json() == []


def test_the_api_needs_the_admin_token_and_names_what_is_missing(app, admin):
    assert TestClient(app).get("/admin/webhook-endpoints").status_code == 401
    assert admin.get("/admin/webhook-endpoints/we_nothing/deliveries").status_code == 404
    assert admin.post("/admin/webhook-deliveries/msg_nothing/replay").json()["detail"] == \
        "no webhook delivery msg_nothing"
    assert admin.patch("/admin/webhook-endpoints/we_nothing", json={"enabled": True}).status_code == 404
    endpoint = create(admin).json()
    assert admin.get(f"/admin/webhook-endpoints/{endpoint['id']}/deliveries", params={"limit": 500}).status_code == 422
    assert admin.get(f"/admin/webhook-endpoints/{endpoint['id']}/deliveries",
                     params={"before": "msg_nothing"}).status_code == 404


def test_the_seller_sees_each_attempt_and_replays_dead_letters(app, admin, monkeypatch):
    endpoint = create(admin).json()
    engine = app.state.engine
    seller = SellerEndpoint(httpx.Response(500, text="x" * 3000))
    clock = Clock(utcnow() + timedelta(seconds=5))
    sender = Sender(engine, WebhookSettings(), private_allowed=False, clock=clock,
                    http=httpx.Client(transport=httpx.MockTransport(seller)))
    # hooks.seller.test resolves to a public address.
    monkeypatch.setattr(targets.socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])
    publish(engine, purchase("cus_ann", "pur_api_1"))
    run_until(sender, clock, lambda: not admin.get(f"/admin/webhook-endpoints/{endpoint['id']}/deliveries",
                                                   params={"status": "pending"}).json())

    [dead] = admin.get(f"/admin/webhook-endpoints/{endpoint['id']}/deliveries", params={"status": "failed"}).json()
    assert dead["attempts"] == 10 and dead["last_status_code"] == 500 and dead["last_error"] == "answered 500"
    assert dead["payload"]["type"] == "postsale.purchase.completed"
    assert dead["payload"]["data"]["purchase_id"] == "pur_api_1"
    assert [a["status_code"] for a in dead["recent_attempts"]] == [500] * 10
    assert all(len(a["response_excerpt"]) == 1000 for a in dead["recent_attempts"])
    assert Webhook(endpoint["secret"]).verify(seller.received[0].content, dict(seller.received[0].headers))

    replayed = admin.post(f"/admin/webhook-deliveries/{dead['id']}/replay")
    assert replayed.status_code == 202 and replayed.json()["status"] == "pending"
    assert admin.post(f"/admin/webhook-deliveries/{dead['id']}/replay").status_code == 409

    # Disabled by the seller: what was not delivered becomes a dead letter, replayed once enabled.
    disabled = admin.patch(f"/admin/webhook-endpoints/{endpoint['id']}", json={"enabled": False}).json()
    assert not disabled["enabled"] and disabled["disabled_reason"] == "disabled by the seller"
    assert admin.post(f"/admin/webhook-endpoints/{endpoint['id']}/replay-failed").status_code == 409
    assert admin.patch(f"/admin/webhook-endpoints/{endpoint['id']}", json={"enabled": True}).json()["enabled"]
    assert admin.post(f"/admin/webhook-endpoints/{endpoint['id']}/replay-failed").json() == {"replayed": 1}
    [pending] = admin.get(f"/admin/webhook-endpoints/{endpoint['id']}/deliveries").json()
    assert pending["status"] == "pending" and pending["id"] == dead["id"]


def test_private_targets_are_refused_by_default_even_when_postsale_runs_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'notifications.db'}")
    # As deploy/compose.yaml starts it unless told otherwise: plain http on this machine.
    monkeypatch.setenv("POSTSALE_NOTIFICATIONS_URL", "http://localhost:8004")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    monkeypatch.delenv("NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS", raising=False)
    app = create_app()
    migrate(app.state.engine, MIGRATIONS_DIR)
    try:
        refused = create(TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}),
                         url="http://127.0.0.1:9000/hooks")
    finally:
        app.state.engine.dispose()
    assert refused.status_code == 422
    assert "must be https" in refused.json()["detail"]


def test_a_misspelt_or_mistyped_field_is_refused_and_changes_nothing(admin):
    saved = admin.put("/admin/email-settings", json={"seller_addresses": ["owner@seller.test"], "notify_each_sale": False})
    assert saved.status_code == 200, saved.text
    for body in ({"seller_adresses": ["b@seller.test"]},  # a PUT that dropped it would reset both settings
                 {"seller_addresses": ["owner@seller.test"], "notify_each_sale": "no"},
                 {"seller_addresses": ["owner@seller.test"], "notify_each_sale": float("nan")}):
        # json.dumps writes NaN as the bare token some clients send; JSON itself has no such number.
        refused = admin.put("/admin/email-settings", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/json", refused.text
    assert "seller_adresses: Extra inputs are not permitted" in admin.put(
        "/admin/email-settings", json={"seller_adresses": []}).json()["message"]
    assert admin.get("/admin/email-settings").json() == {"seller_addresses": ["owner@seller.test"],
                                                          "notify_each_sale": False}
