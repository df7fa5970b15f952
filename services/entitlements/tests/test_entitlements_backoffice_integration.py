"""A third-party membership's endpoint and signing secret in the back office, over HTTP on the real
app (without Kafka): the owner's alone, the secret shown only on the answer that made it, and an
endpoint that would let Postsale call into the seller's network (a private, loopback, link-local or
reserved address, or plain http) refused when it is saved and again before each call."""

from __future__ import annotations

import socket
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from delivery_support import T0, Clock, admin_headers, handle, paid
from postsale.entitlements import handlers
from postsale.entitlements.adapters.tables import Delivery, DeliveryRun, Product
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.delivery.runner import DELIVERIES, run_delivery
from postsale.runtime.scheduler import Scheduler
from postsale.runtime.settings import PublicUrls
from postsale.runtime.targets import TargetRefused, check_url
from test_entitlements_backoffice import app, engine, form_token, made, owner, stored, support, text_of, tokens

pytestmark = pytest.mark.unit
FIXTURES = (app, engine, owner, support, tokens)  # the product pages' fixtures, used here by name
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PRIVATE = "ENTITLEMENTS_INTEGRATION_PRIVATE_TARGETS"
REFUSED = ("http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/latest/meta-data/",
           "https://127.0.0.1/hook", "https://localhost:8443/hook", "https://10.0.0.5/hook", "https://[::1]/hook",
           "https://[::ffff:169.254.169.254]/hook", "https://100.64.0.1/hook", "https://240.0.0.1/hook",
           "http://members.example.com/hook", "https://user:pw@members.example.com/hook", "ftp://members.example.com")


@pytest.fixture(autouse=True)
def no_private_targets(monkeypatch):
    monkeypatch.delenv(PRIVATE, raising=False)


def club(engine, **settings) -> str:
    return made(engine, "Club", "integration", **{"endpoint_url": "https://members.example.com/hook",
                                                  "secret": SECRET, **settings})


def test_support_sees_the_urls_but_never_the_secret_nor_the_form(support, engine):
    product = club(engine, access_url="https://members.example.com/login")
    page = support.get(f"/admin/products/{product}/edit")
    assert page.status_code == 200 and SECRET not in page.text and "data-signing-secret" not in page.text
    assert '<dd data-endpoint-url>https://members.example.com/hook</dd>' in page.text
    assert '<dd data-access-url>https://members.example.com/login</dd>' in page.text
    assert 'data-secret-state="set"' in page.text and "data-owner-only" in page.text
    assert f"/admin/products/{product}/edit/integration" not in page.text and 'name="endpoint_url"' not in page.text

    settings = f"/admin/products/{product}/edit/integration"
    assert support.get(settings).status_code == 403
    for url, data in ((settings, {"endpoint_url": "https://evil.example/x", "secret": ""}),
                      (f"{settings}/secret", {}),
                      (f"/admin/products/{product}/edit/delivery", {"endpoint_url": "https://evil.example/x"})):
        refused = support.post(url, data=data)
        assert refused.status_code == 403 and SECRET not in refused.text, url
    assert stored(engine, product).delivery_settings == {"endpoint_url": "https://members.example.com/hook",
                                                         "secret": SECRET,
                                                         "access_url": "https://members.example.com/login"}


def test_the_owner_changes_the_endpoint_and_the_secret_which_is_never_shown_again(owner, engine):
    product = club(engine)
    page = owner.get(f"/admin/products/{product}/edit").text
    assert SECRET not in page and f'href="/admin/products/{product}/edit/integration"' in page
    settings = f"/admin/products/{product}/edit/integration"
    form = owner.get(settings)
    assert form.status_code == 200 and SECRET not in form.text and 'value="https://members.example.com/hook"' in form.text
    assert "Signing secret: <strong>set</strong>" in form.text and 'name="secret"' in form.text

    kept = owner.post(settings, data={"endpoint_url": "https://new.example.com/hook",
                                      "access_url": "https://new.example.com", "secret": ""})
    assert kept.status_code == 303 and kept.headers["location"].endswith("done=delivery")
    assert stored(engine, product).delivery_settings == {"endpoint_url": "https://new.example.com/hook",
                                                         "access_url": "https://new.example.com", "secret": SECRET}
    weak = owner.post(settings, data={"endpoint_url": "https://a.example", "secret": "whsec_short"})
    assert weak.status_code == 422 and "Signing secret: must be `whsec_`" in text_of(weak)
    assert "whsec_short" not in weak.text and 'value="https://a.example"' in weak.text  # a typed secret is not echoed
    typed = "whsec_" + "A" * 40
    replaced = owner.post(settings, data={"endpoint_url": "https://new.example.com/hook", "secret": typed})
    assert replaced.status_code == 303
    assert "with the signing secret you typed" in owner.get(replaced.headers["location"]).text
    assert stored(engine, product).delivery_settings["secret"] == typed

    made_now = owner.post(f"{settings}/secret")
    secret = stored(engine, product).delivery_settings["secret"]
    assert made_now.status_code == 200 and secret not in (SECRET, typed) and secret.startswith("whsec_")
    assert f"<code data-signing-secret style=\"font-size: 1rem; word-break: break-all;\">{secret}</code>" in made_now.text
    assert "It is shown on this page only" in made_now.text
    for url in (f"/admin/products/{product}/edit", settings, "/admin/products"):
        assert secret not in owner.get(url).text, url
    assert owner.post(f"{settings}/secret", csrf=False).status_code == 403
    course = made(engine, "Course")
    assert owner.get(f"/admin/products/{course}/edit/integration").status_code == 404


def test_a_new_third_party_membership_shows_its_secret_once_and_only_to_the_owner(owner, support, engine):
    form = {"name": "Club", "delivery_type": "integration",
            "submission": form_token(owner.get("/admin/products/new").text, "/admin/products/new")}
    created = owner.post("/admin/products/new", data=form)
    with Session(engine) as session:
        [product] = session.exec(select(Product)).all()
    secret = product.delivery_settings["secret"]
    assert created.status_code == 201 and secret in created.text and "The product is created" in created.text
    assert f'href="/admin/products/{product.id}/edit"' in created.text
    again = owner.post("/admin/products/new", data=form)  # a reload of that answer: no new product, no secret
    assert again.status_code == 303 and secret not in owner.get(again.headers["location"]).text
    assert again.headers["location"] == f"/admin/products/{product.id}/edit?done=created"

    by_support = support.post("/admin/products/new", data={"name": "Club 2", "delivery_type": "integration"})
    assert by_support.status_code == 303
    with Session(engine) as session:
        other = session.exec(select(Product).where(Product.name == "Club 2")).one()
    assert other.delivery_settings["secret"] not in support.get(by_support.headers["location"]).text


@pytest.mark.parametrize("url", REFUSED)
def test_an_endpoint_into_the_sellers_network_is_refused_and_changes_nothing(owner, engine, url):
    product = club(engine)
    refused = owner.post(f"/admin/products/{product}/edit/integration", data={"endpoint_url": url})
    assert refused.status_code == 422 and "Endpoint URL: " in text_of(refused), url
    assert stored(engine, product).delivery_settings["endpoint_url"] == "https://members.example.com/hook"


def test_the_json_admin_api_refuses_them_too(app, engine):
    api = TestClient(app, headers=admin_headers())
    product = club(engine)
    put = api.put(f"/admin/products/{product}/delivery",
                  json={"integration": {"endpoint_url": "https://169.254.169.254/", "secret": SECRET}})
    assert put.status_code == 422 and "not a public address" not in put.text and "private" in put.text
    post = api.post("/admin/products", json={"name": "X", "delivery_type": "integration",
                                             "integration": {"endpoint_url": "http://127.0.0.1:9/x"}})
    assert post.status_code == 422 and "must be https" in post.text
    with Session(engine) as session:
        assert [p.id for p in session.exec(select(Product)).all()] == [product]


def test_private_targets_are_allowed_only_by_the_setting_for_development(owner, engine, monkeypatch):
    product = club(engine)
    settings = f"/admin/products/{product}/edit/integration"
    assert owner.post(settings, data={"endpoint_url": "http://127.0.0.1:9/hook"}).status_code == 422
    monkeypatch.setenv(PRIVATE, "true")  # as `make run` and the end-to-end suite set it
    assert owner.post(settings, data={"endpoint_url": "http://127.0.0.1:9/hook"}).status_code == 303
    assert owner.post(settings, data={"endpoint_url": "https://10.0.0.5/hook"}).status_code == 303
    # Plain http goes nowhere but to this machine, whatever the setting.
    assert owner.post(settings, data={"endpoint_url": "http://members.example.com/hook"}).status_code == 422
    with pytest.raises(TargetRefused):
        check_url("http://10.0.0.5/hook", private_allowed=True, setting=PRIVATE)


class Platform:
    """The third party's endpoint behind httpx's mock transport: keeps each request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(lambda r: self.requests.append(r) or httpx.Response(200)))


def send_due(engine, platform: Platform, now: datetime = T0) -> None:
    def run(session, row, now):
        run_delivery(session, row, now, settings=DeliverySettings(), urls=PublicUrls(), http=platform.client())
    Scheduler(engine, DELIVERIES, DeliveryRun, run, clock=Clock(now)).run_due()


def the_delivery(engine, product_id: str) -> Delivery:
    with Session(engine) as session:
        return session.exec(select(Delivery).where(Delivery.product_id == product_id)).one()


def test_each_call_resolves_the_name_again_and_goes_only_to_the_public_address_it_checked(engine, monkeypatch):
    product = club(engine)
    handle(engine, handlers.grant_access_for_purchase, paid(product, purchase_id="pur_1", delivery_type="integration"),
           T0)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("169.254.169.254", 443))])
    platform = Platform()
    send_due(engine, platform)  # the name now points at the cloud's metadata service: not called
    delivery = the_delivery(engine, product)
    assert platform.requests == [] and delivery.status == "retrying"
    assert delivery.detail == ("not sent: the endpoint URL members.example.com resolves to 169.254.169.254, which is "
                               "not a public address")

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])
    send_due(engine, platform, delivery.next_attempt_at.replace(tzinfo=T0.tzinfo))
    [call] = platform.requests
    assert (call.url.host, call.headers["host"], call.extensions["sni_hostname"]) == (
        "93.184.216.34", "members.example.com", "members.example.com")
    assert the_delivery(engine, product).status == "done"


def test_an_endpoint_saved_before_the_check_is_still_read_but_never_called(owner, engine):
    product = club(engine)
    with Session(engine) as session:  # as an older version let it be saved
        row = session.get(Product, product)
        row.delivery_settings = {**row.delivery_settings, "endpoint_url": "http://169.254.169.254/latest/"}
        session.commit()
    assert "http://169.254.169.254/latest/" in owner.get(f"/admin/products/{product}/edit").text
    handle(engine, handlers.grant_access_for_purchase, paid(product, purchase_id="pur_1", delivery_type="integration"),
           T0)
    platform = Platform()
    send_due(engine, platform)
    assert platform.requests == [] and "not sent: the endpoint URL must be https" in the_delivery(engine, product).detail
    refused = owner.post(f"/admin/products/{product}/edit/integration/secret")  # fix the endpoint first
    assert refused.status_code == 422 and "Endpoint URL: must be https" in text_of(refused)
    assert stored(engine, product).delivery_settings["secret"] == SECRET
