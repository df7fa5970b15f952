"""The back office's Webhooks pages as notifications serves them, over HTTP without a browser: the
owner adds an endpoint (once, however often the form is sent) and sees its signing secret once,
edits it, rotates the secret, disables and enables it, reads its deliveries a page at a time,
replays dead letters, and deletes it after confirming. Support neither sees nor reaches any of
it; bad input changes nothing."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from postsale.runtime.clock import utcnow

from postsale.notifications.webhooks.tables import WebhookDelivery, WebhookEndpoint
from test_notifications_backoffice_emails import ACCOUNTS, NOTIFICATIONS, browser, service_app
from test_webhooks import publish, purchase

pytestmark = pytest.mark.unit
URL = "https://hooks.seller.test/postsale"
COMPLETED, REFUNDED = "postsale.purchase.completed", "postsale.purchase.refunded"


@pytest.fixture
def app(tmp_path, monkeypatch):
    yield from service_app(tmp_path, monkeypatch)


def endpoint_rows(app) -> list[WebhookEndpoint]:
    with Session(app.state.engine) as session:
        return list(session.exec(select(WebhookEndpoint)).all())


def delivery_rows(app) -> list[WebhookDelivery]:
    with Session(app.state.engine) as session:
        return list(session.exec(select(WebhookDelivery).order_by(WebhookDelivery.seq)).all())


def add(owner, submission: str | None = None, **fields):
    """Posts the endpoint form as its page made it (or with `submission`), without following the answer."""
    token = owner.submission("/admin/webhooks/new") if submission is None else submission
    return owner.post("/admin/webhooks/new", data={"url": URL, "event_types": [COMPLETED], "description": "CRM",
                                                   "alert_emails": "Ops@Seller.test", "submission": token, **fields})


def secret_of(page) -> str:
    return re.search(r"data-signing-secret[^>]*>(whsec_[^<]+)<", page.text).group(1)


def shown(owner, answer):
    """The page the form's answer leads to, where the secret is shown once."""
    assert answer.status_code == 303, answer.text
    page = owner.get(answer.headers["location"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    return page


def test_support_neither_sees_nor_reaches_the_webhooks(app):
    support = browser(app, "support")
    assert "/admin/webhooks" not in support.get("/admin/mail").text
    for path in ("/admin/webhooks", "/admin/webhooks/new"):
        refused = support.get(path)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert "Only the store's owner may do this" in html.unescape(refused.text)
    assert add(support, submission="a" * 24).status_code == 403
    assert endpoint_rows(app) == []

    owner = browser(app)
    secret_page = shown(owner, add(owner))
    endpoint_id = endpoint_rows(app)[0].id
    assert support.get(f"/admin/webhooks/{endpoint_id}/secret").status_code == 403
    for path in ("/edit", "/rotate-secret", "/delete", "/disable", "/replay-failed"):
        method = support.get if path == "/edit" else support.post
        assert method(f"/admin/webhooks/{endpoint_id}{path}", **({} if path == "/edit" else {"data": {}})) \
            .status_code == 403, path
    [endpoint] = endpoint_rows(app)
    assert endpoint.enabled and endpoint.secret == secret_of(secret_page)


def test_a_stranger_is_sent_to_the_staff_login(app):
    sent = browser(app, role=None).get("/admin/webhooks")
    assert sent.status_code == 303 and sent.headers["location"].startswith(f"{ACCOUNTS}/admin/login?next=")


def test_the_owner_adds_an_endpoint_and_sees_its_secret_once(app):
    owner = browser(app)
    listing = owner.get("/admin/webhooks")
    assert listing.status_code == 200 and "No webhook endpoint yet" in listing.text
    assert f'href="{NOTIFICATIONS}/admin/webhooks" aria-current="page"' in listing.text
    form = html.unescape(owner.get("/admin/webhooks/new").text)
    assert f'value="{COMPLETED}"' in form and "A customer paid for an offer" in form
    assert "postsale.login_link.issued" not in form  # restricted events are never offered

    answer = add(owner, event_types=[COMPLETED, REFUNDED])
    [endpoint] = endpoint_rows(app)
    assert answer.status_code == 303 and endpoint.secret not in answer.text
    assert answer.headers["location"] == f"/admin/webhooks/{endpoint.id}/secret?made=created"
    created = shown(owner, answer)
    secret = secret_of(created)
    assert "The endpoint is added" in created.text and f"Events go to {URL} from now on" in created.text
    assert endpoint.secret == secret and endpoint.event_types == [COMPLETED, REFUNDED]
    assert endpoint.alert_emails == ["ops@seller.test"]
    assert f'href="/admin/webhooks/{endpoint.id}"' in created.text

    reloaded = shown(owner, answer)  # a reload of the secret's page: nothing new, nothing changed
    assert secret not in reloaded.text and "was shown once, when it was made" in reloaded.text
    assert endpoint_rows(app)[0].secret == secret and len(endpoint_rows(app)) == 1
    page = owner.get(f"/admin/webhooks/{endpoint.id}")
    assert page.status_code == 200 and URL in page.text and REFUNDED in page.text
    assert secret not in page.text and secret not in owner.get("/admin/webhooks").text  # shown once only
    assert f'data-endpoint-id="{endpoint.id}"' in owner.get("/admin/webhooks").text


def test_the_endpoint_form_sent_twice_adds_one_endpoint(app):
    owner = browser(app)
    token = owner.submission("/admin/webhooks/new")
    first, second = add(owner, submission=token), add(owner, submission=token)  # a double click
    [endpoint] = endpoint_rows(app)
    assert first.headers["location"] == second.headers["location"] == f"/admin/webhooks/{endpoint.id}/secret?made=created"
    assert secret_of(shown(owner, second)) == endpoint.secret  # whichever answer the browser keeps, shown once
    assert "data-signing-secret" not in shown(owner, first).text
    assert add(owner).status_code == 303 and len(endpoint_rows(app)) == 2  # a new form adds a new one

    for bad in ("", "short", "not a token!!!!!!!!!"):
        refused = add(owner, submission=bad)
        assert refused.status_code == 422 and "This form was not sent as the page made it" in html.unescape(refused.text)
        assert re.search(r'name="submission" value="[A-Za-z0-9_-]{16,64}"', refused.text)
    assert len(endpoint_rows(app)) == 2


def test_a_secret_not_shown_within_minutes_is_not_shown_later(app):
    owner = browser(app)
    answer = add(owner)
    with Session(app.state.engine) as session:
        [endpoint] = session.exec(select(WebhookEndpoint)).all()
        endpoint.show_secret_until = utcnow() - timedelta(seconds=1)
        session.add(endpoint)
        session.commit()
    later = shown(owner, answer)
    assert "data-signing-secret" not in later.text and "was shown once" in later.text


@pytest.mark.parametrize(("fields", "says"), [
    ({"event_types": []}, "Events: choose at least one event type."),
    ({"event_types": ["postsale.login_link.issued"]}, "unknown event type(s): postsale.login_link.issued"),
    ({"url": "http://hooks.seller.test/x"}, "URL: must be https"),
    ({"url": "https://192.168.0.10/x"}, "private or loopback"),
    ({"url": "https://" + "a" * 2000 + ".test/"}, "URL: must have at most 2000 characters"),
    ({"alert_emails": "not an address"}, "Alert emails: 'not an address' is not an email address"),
    ({"alert_emails": ""}, "Alert emails: nobody would be told if this endpoint were disabled"),
    ({"description": "x" * 501}, "Description: must have at most 500 characters"),
    ({"description": "CRM\x00"}, "must not contain a NUL character"),
])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_added(app, fields, says):
    refused = add(browser(app), **fields)
    assert refused.status_code == 422
    page = html.unescape(refused.text)
    assert says in page and 'role="alert"' in page
    if "url" in fields and len(fields["url"]) < 100:
        assert fields["url"] in page  # what was typed is kept
    assert endpoint_rows(app) == []


def test_the_owner_edits_rotates_disables_and_deletes_after_confirming(app):
    owner = browser(app)
    first_secret = secret_of(shown(owner, add(owner)))
    endpoint_id = endpoint_rows(app)[0].id
    url = f"/admin/webhooks/{endpoint_id}"

    edit = html.unescape(owner.get(f"{url}/edit").text)
    assert f'value="{URL}"' in edit and "ops@seller.test" in edit
    refused = owner.post(f"{url}/edit", data={"url": URL, "event_types": [], "alert_emails": "ops@seller.test"})
    assert refused.status_code == 422 and endpoint_rows(app)[0].event_types == [COMPLETED]
    saved = owner.post(f"{url}/edit", data={"url": "https://crm.seller.test/in", "event_types": [REFUNDED],
                                            "description": "", "alert_emails": "a@seller.test\nb@seller.test"})
    assert saved.status_code == 303 and "Saved." in owner.get(saved.headers["location"]).text
    [endpoint] = endpoint_rows(app)
    assert (endpoint.url, endpoint.event_types, endpoint.description) == ("https://crm.seller.test/in", [REFUNDED], "")
    assert endpoint.alert_emails == ["a@seller.test", "b@seller.test"]

    page = html.unescape(owner.get(url).text)
    assert "Rotate the signing secret…" in page and "Yes, make a new secret" in page
    assert "Yes, delete https://crm.seller.test/in" in page and "Yes, disable it" in page
    assert owner.post(f"{url}/rotate-secret", data={}).status_code == 422  # not sent as the page made it
    assert endpoint_rows(app)[0].secret == first_secret
    token = owner.submission(url)
    answer = owner.post(f"{url}/rotate-secret", data={"submission": token})
    again = owner.post(f"{url}/rotate-secret", data={"submission": token})  # a double click: rotated once
    assert answer.headers["location"] == again.headers["location"] == f"{url}/secret?made=rotated"
    rotated = shown(owner, again)
    assert "A new signing secret" in rotated.text and secret_of(rotated) != first_secret
    assert endpoint_rows(app)[0].secret == secret_of(rotated)
    assert "data-signing-secret" not in shown(owner, answer).text  # shown once

    disabled = owner.post(f"{url}/disable", data={})
    assert disabled.status_code == 303 and "The endpoint is disabled" in owner.get(disabled.headers["location"]).text
    assert not endpoint_rows(app)[0].enabled
    assert "Enable the endpoint again" in owner.get(url).text
    assert owner.post(f"{url}/enable", data={}).status_code == 303 and endpoint_rows(app)[0].enabled

    assert owner.post(f"{url}/delete", data={}, csrf=False).status_code == 403
    deleted = owner.post(f"{url}/delete", data={})
    assert deleted.status_code == 303 and "The endpoint is deleted" in owner.get(deleted.headers["location"]).text
    assert endpoint_rows(app) == []
    gone = owner.get(url)
    assert gone.status_code == 404 and "This page does not exist" in gone.text
    assert 'data-staff-role="owner"' in gone.text  # in the back office's layout
    assert owner.post(f"{url}/rotate-secret", data={"submission": token}).status_code == 404
    assert owner.get(f"{url}/secret").status_code == 404


def test_deliveries_are_paginated_and_dead_letters_are_replayed(app):
    owner = browser(app)
    add(owner)
    endpoint_id = endpoint_rows(app)[0].id
    url = f"/admin/webhooks/{endpoint_id}"
    assert "Nothing was sent to this endpoint yet" in owner.get(url).text
    for n in range(52):
        publish(app.state.engine, purchase(f"cus_{n:02d}", f"pur_{n:02d}"))
    page = owner.get(url)
    assert page.text.count("data-delivery-id=") == 50 and 'data-delivery-status="pending"' in page.text
    assert "pur_51" in page.text and "pur_01" not in page.text  # newest first
    older = re.search(r'href="([^"]+before=msg_[^"]+)"', page.text).group(1)
    second = owner.get(html.unescape(older))
    assert second.text.count("data-delivery-id=") == 2 and "pur_00" in second.text and "Newest deliveries" in second.text

    # Disabled: what was not delivered becomes failed; while disabled, nothing is replayed.
    owner.post(f"{url}/disable", data={})
    assert all(d.status == "failed" for d in delivery_rows(app))
    first = delivery_rows(app)[0]
    refused = owner.post(f"{url}/replay-failed", data={})
    assert refused.status_code == 409 and "the endpoint is disabled: enable it first" in refused.text
    owner.post(f"{url}/enable", data={})
    failed = owner.get(url, params={"status": "failed"})
    assert failed.text.count('data-delivery-status="failed"') == 50 and "Replay the 52 failed deliveries" in failed.text

    one = owner.post(f"{url}/deliveries/{first.id}/replay", data={})
    assert one.status_code == 303 and "The delivery is being sent again" in owner.get(one.headers["location"]).text
    assert delivery_rows(app)[0].status == "pending"
    again = owner.post(f"{url}/deliveries/{first.id}/replay", data={})
    assert again.status_code == 409 and "only a failed delivery is replayed" in again.text
    assert owner.post(f"{url}/deliveries/msg_nothing/replay", data={}).status_code == 404

    rest = owner.post(f"{url}/replay-failed", data={})
    assert rest.status_code == 303 and rest.headers["location"] == f"{url}?done=replayed"
    assert "The failed deliveries are being sent again" in owner.get(rest.headers["location"]).text
    assert {d.status for d in delivery_rows(app)} == {"pending"}
    for bad in ("msg_gone", "x" * 500, "²"):  # a cursor that names nothing: the newest page, never an error
        assert owner.get(url, params={"before": bad, "status": bad}).status_code == 200
