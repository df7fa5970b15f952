"""The back office's Emails pages as notifications serves them, over HTTP without a browser: the
template editor (variables, preview, a draft refused with its line, test send, back to the
default), the email settings, and the emails sent with their delivery. The owner changes them
(support only reads: test_notifications_backoffice_support.py); a stranger is sent to the staff
login. Follow-ups: test_notifications_backoffice_followups.py."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from postsale.notifications import rendering
from postsale.notifications.adapters.tables import Email, EmailSettings, Sequence, TemplateOverride
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.emails import queue_rendered
from postsale.notifications.entrypoints.app import create_app
from postsale.runtime.clock import utcnow
from postsale.runtime.migrations import migrate
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import FormBrowser, StaffTokens

pytestmark = pytest.mark.unit
NOTIFICATIONS = "http://notifications.test"
ACCOUNTS = "http://accounts.test"


class Browser(FormBrowser):
    """A staff member's browser on notifications' pages: each form it posts carries the CSRF token
    the pages carry."""

    csrf_page = "/admin/mail"

    def submission(self, url: str) -> str:
        """The submission token of the (first) form on the page at `url`."""
        page = self.get(url)
        assert page.status_code == 200, page.text
        return re.search(r'name="submission" value="([^"]+)"', page.text).group(1)

    def text(self, url: str, **kwargs) -> str:
        """The page as a person reads it (entities decoded)."""
        page = self.get(url, **kwargs)
        assert page.status_code == 200, page.text
        return html.unescape(page.text)


def service_app(tmp_path, monkeypatch):
    """Notifications' app as it runs, on a migrated SQLite file, verifying this test's staff tokens."""
    monkeypatch.setenv("NOTIFICATIONS_ADMIN_TOKEN", "a-token-of-sixteen-or-more")
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'notifications.db'}")
    monkeypatch.setenv("POSTSALE_NOTIFICATIONS_URL", NOTIFICATIONS)
    monkeypatch.setenv("POSTSALE_ACCOUNTS_URL", ACCOUNTS)
    monkeypatch.setenv("POSTSALE_COOKIE_SECURE", "false")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    monkeypatch.delenv("NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS", raising=False)
    app = create_app()
    migrate(app.state.engine, MIGRATIONS_DIR)
    app.state.staff_tokens = StaffTokens()
    app.state.staff_tokens.install(app)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def app(tmp_path, monkeypatch):
    yield from service_app(tmp_path, monkeypatch)


def browser(app, role: str | None = "owner") -> Browser:
    client = Browser(app, base_url=NOTIFICATIONS, follow_redirects=False, headers={"Accept": "text/html"})
    if role:
        client.cookies.set(STAFF_COOKIE, app.state.staff_tokens.token(role))
    return client


def saved(app, name: str) -> TemplateOverride | None:
    with Session(app.state.engine) as session:
        return session.get(TemplateOverride, name)


def rows(app, model) -> list:
    with Session(app.state.engine) as session:
        return list(session.exec(select(model)).all())


def test_a_stranger_is_sent_to_the_staff_login_and_changes_nothing(app):
    stranger = browser(app, role=None)
    for path in ("/admin/mail", "/admin/mail/templates/purchase_confirmation", "/admin/mail/sent?to=ann@example.com",
                 "/admin/mail/sequences", "/admin/mail/settings"):
        sent = stranger.get(path)
        assert sent.status_code == 303, path
        assert sent.headers["location"].startswith(f"{ACCOUNTS}/admin/login?next=http%3A%2F%2Fnotifications.test")
    forged = stranger.post("/admin/mail/templates/purchase_confirmation", csrf=False,
                           data={"subject": "Hacked", "html": "<p>x</p>", "text": "x"})
    assert forged.status_code in (303, 403)
    assert saved(app, "purchase_confirmation") is None


def test_the_emails_page_links_to_each_part_and_support_may_read_them(app):
    support = browser(app, "support")
    page = support.get("/admin/mail")
    assert page.status_code == 200 and 'data-staff-role="support"' in page.text
    assert f'<a href="{NOTIFICATIONS}/admin/mail" aria-current="page">Emails</a>' in page.text
    for part in ("/admin/mail/templates", "/admin/mail/settings", "/admin/mail/sequences", "/admin/mail/rules",
                 "/admin/mail/sent"):
        assert f'href="{part}"' in page.text
        assert support.get(part).status_code == 200, part
    assert "/admin/webhooks" not in page.text  # the owner's page is not shown to support


def test_the_editor_lists_the_variables_and_previews_the_email_in_a_sandboxed_frame(app):
    staff = browser(app)
    listing = staff.text("/admin/mail/templates")
    for name in rendering.DEFAULTS.glob("*.subject.txt"):
        template = name.name.removesuffix(".subject.txt")
        assert f'data-template="{template}"' in listing
    editor = staff.get("/admin/mail/templates/purchase_confirmation")
    assert editor.status_code == 200
    page = html.unescape(editor.text)
    assert "Purchase confirmation" in page and 'name="subject"' in page and 'name="html"' in page
    assert 'name="text"' in page and "library_url" in page and "The customer's library." in page
    assert "unsubscribe_url" in page  # the variables every email offers
    frame = re.search(r'<iframe sandbox srcdoc="([^"]*)"[^>]*data-preview', editor.text)
    assert frame and "Creator Membership" in html.unescape(frame.group(1))  # rendered with the example values
    own_page = staff.get("/admin/mail/templates/purchase_confirmation/preview")
    assert own_page.status_code == 200 and "Creator Membership" in own_page.text
    assert own_page.headers["content-security-policy"].startswith("sandbox")


def test_a_draft_is_previewed_without_saving_then_saved_and_used(app):
    staff = browser(app)
    url = "/admin/mail/templates/purchase_confirmation"
    draft = {"subject": "Welcome to {{ purchase.offer_name }}!", "html": "<p>Start at {{ library_url }}</p>",
             "text": "Start at {{ library_url }}"}
    previewed = staff.post(url, data={**draft, "action": "preview"})
    assert previewed.status_code == 200
    assert "Welcome to Creator Membership: lifetime access!" in html.unescape(previewed.text)
    assert "of your draft (not saved)" in previewed.text and saved(app, "purchase_confirmation") is None

    done = staff.post(url, data={**draft, "action": "save"})
    assert done.status_code == 303 and done.headers["location"] == f"{url}?done=saved"
    page = staff.text(done.headers["location"])
    assert "Saved. The next email of this kind uses your version." in page
    assert 'value="Welcome to {{ purchase.offer_name }}!"' in page
    assert saved(app, "purchase_confirmation").subject == draft["subject"]

    unknown = staff.post(url, data={**draft, "html": "<p>{{ secret_key }}</p>"})
    assert unknown.status_code == 422
    assert "The HTML part, line 1: this email offers no variable secret_key; it offers" in html.unescape(unknown.text)


@pytest.mark.parametrize(("part", "source", "says"), [
    ("html", "<p>Hi</p>\n{% if %}", "The HTML part, line 2: TemplateSyntaxError"),
    ("text", "Hi\n\n{{ purchase.no_such_field }}", "The text part, line 3: UndefinedError"),
    ("html", "<p>{{ secret_key }}</p>", "The HTML part, line 1: "),
    ("html", "{{ purchase.__class__.__mro__ }}", "unsafe"),
    ("subject", "", "Subject: cannot be empty"),
    ("text", "Hi\x00", "cannot hold NUL characters"),
])
@pytest.mark.parametrize("action", ["save", "preview"])
def test_a_template_that_does_not_render_is_shown_with_its_line_and_nothing_changes(app, part, source, says, action):
    staff = browser(app)
    form = {"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi", part: source, "action": action}
    refused = staff.post("/admin/mail/templates/purchase_confirmation", data=form)
    assert refused.status_code == 422
    page = html.unescape(refused.text)
    assert says in page and 'role="alert"' in page
    if "\x00" not in source:
        assert source in page  # what was typed is kept
    assert saved(app, "purchase_confirmation") is None


def test_a_test_send_queues_the_email_to_the_address_given_once_per_submission(app):
    staff = browser(app)
    url = "/admin/mail/templates/login_link"
    assert 'value="owner@store.test"' in staff.text(url)  # the staff member's own address, to start with
    token = staff.submission(url)
    refused = staff.post(f"{url}/test-send", data={"to": "not an address", "submission": token})
    assert refused.status_code == 422 and "Send to: 'not an address' is not an email address" in \
        html.unescape(refused.text)
    untokened = staff.post(f"{url}/test-send", data={"to": "me@store.test"})
    assert untokened.status_code == 422 and "This form was not sent as the page made it" in \
        html.unescape(untokened.text)
    assert rows(app, Email) == []
    sent = staff.post(f"{url}/test-send", data={"to": "me@store.test", "submission": token})
    again = staff.post(f"{url}/test-send", data={"to": "me@store.test", "submission": token})  # a double click
    assert sent.status_code == again.status_code == 303 and sent.headers["location"] == again.headers["location"]
    assert "A test email is queued for me@store.test" in staff.text(sent.headers["location"])
    [email] = rows(app, Email)
    assert email.to == "me@store.test" and email.subject.startswith("[Test] ") and email.status == "queued"


def test_a_notice_names_only_what_the_database_holds(app):
    """A link cannot make a page announce what did not happen: the address's words are not shown."""
    staff = browser(app)
    url = "/admin/mail/templates/login_link"
    for query in ({"done": "test-sent", "to": "attacker@evil.test"},
                  {"done": "test-sent", "email": "test-send:login_link:not-a-real-key-000"},
                  {"done": "test-sent", "email": "purchase-confirmation:pur_1"}):
        page = staff.text(url, params=query)
        assert "A test email is queued" not in page and "attacker@evil.test" not in page, query
    listing = staff.text("/admin/mail/templates", params={"done": "deleted", "name": "Your account was closed"})
    assert "The template is deleted." in listing and "Your account was closed" not in listing


def test_reset_asks_first_and_brings_the_default_back(app):
    staff = browser(app)
    url = "/admin/mail/templates/refund_confirmation"
    assert "Reset to Postsale's default" not in staff.text(url)  # nothing to reset yet
    staff.post(url, data={"subject": "Refunded", "html": "<p>Done</p>", "text": "Done", "action": "save"})
    page = staff.text(url)
    assert "<details" in page and "Yes, reset refund_confirmation to the default" in page
    reset = staff.post(f"{url}/reset", data={})
    assert reset.status_code == 303 and "Back to Postsale's default" in staff.text(reset.headers["location"])
    assert saved(app, "refund_confirmation") is None


def test_an_unknown_template_or_page_is_a_404_in_the_back_office(app):
    staff = browser(app, "support")
    for path in ("/admin/mail/templates/no_such_email", "/admin/mail/templates/Bad%20Name",
                 "/admin/mail/templates/no_such_email/preview", "/admin/mail/sent/no-such-key"):
        missing = staff.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"].startswith("text/html") and 'data-staff-role="support"' in missing.text
        assert "This page does not exist" in missing.text
    assert browser(app).post("/admin/mail/templates/no_such_email/test-send", data={"to": "a@b.test"}).status_code \
        == 404
    nowhere = staff.get("/admin/mail/nothing-here")
    assert nowhere.status_code == 404 and "This page does not exist" in nowhere.text
    assert 'data-staff-role="support"' in nowhere.text  # in the back office's layout


def test_a_form_without_its_token_changes_nothing(app):
    staff = browser(app, "owner")
    refused = staff.post("/admin/mail/templates/purchase_confirmation", csrf=False,
                         data={"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"})
    assert refused.status_code == 403 and saved(app, "purchase_confirmation") is None


def test_a_sellers_own_template_is_created_once_and_deleted_unless_a_sequence_sends_it(app):
    staff = browser(app)
    form = staff.text("/admin/mail/templates/new")
    assert 'name="name"' in form and "offer_url" in form  # the follow-up variables
    bad = staff.post("/admin/mail/templates/new", data={"name": "Week One!", "subject": "S", "html": "<p>H</p>",
                                                        "text": "T"})
    assert bad.status_code == 422 and "Name: use 1 to 64 lower-case letters" in html.unescape(bad.text)
    taken = staff.post("/admin/mail/templates/new", data={"name": "login_link", "subject": "S", "html": "<p>H</p>",
                                                          "text": "T"})
    assert taken.status_code == 409 and "there is a template login_link already" in taken.text
    week_one = {"name": "week-one", "subject": "How is {{ offer_name }}?", "html": "<p>{{ offer_url }}</p>",
                "text": "Hi"}
    created = staff.post("/admin/mail/templates/new", data=week_one)
    again = staff.post("/admin/mail/templates/new", data=week_one)  # the same form sent twice: the same answer
    assert created.status_code == again.status_code == 303
    assert created.headers["location"] == again.headers["location"] == "/admin/mail/templates/week-one?done=created"
    assert "your own" in staff.text("/admin/mail/templates")
    other = staff.post("/admin/mail/templates/new", data={**week_one, "subject": "Another"})
    assert other.status_code == 409 and saved(app, "week-one").subject == week_one["subject"]

    made = staff.post("/admin/mail/sequences/new", data={
        "name": "Onboarding", "offer_id": "off_1", "delay": ["3"], "unit": ["days"], "template": ["week-one"],
        "submission": staff.submission("/admin/mail/sequences/new")})
    assert made.status_code == 303
    in_use = staff.post("/admin/mail/templates/week-one/reset", data={})
    assert in_use.status_code == 409 and "still send week-one" in html.unescape(in_use.text)
    assert saved(app, "week-one") is not None
    staff.post(f"/admin/mail/sequences/{rows(app, Sequence)[0].id}/delete", data={})
    deleted = staff.post("/admin/mail/templates/week-one/reset", data={})
    assert deleted.status_code == 303 and "The template is deleted" in staff.text(deleted.headers["location"])
    assert saved(app, "week-one") is None


def test_the_email_settings_are_saved_and_a_bad_address_changes_nothing(app):
    staff = browser(app)
    page = staff.text("/admin/mail/settings")
    assert "NOTIFICATIONS_SELLER_EMAILS" in page and 'name="notify_each_sale"' in page
    done = staff.post("/admin/mail/settings", data={"seller_addresses": "sales@store.test\nowner@store.test"})
    assert done.status_code == 303
    page = staff.text(done.headers["location"])
    assert "Saved." in page and "sales@store.test\nowner@store.test" in page
    [row] = rows(app, EmailSettings)
    assert row.seller_addresses == ["sales@store.test", "owner@store.test"] and not row.notify_each_sale

    refused = staff.post("/admin/mail/settings", data={"seller_addresses": "sales@store.test, nope",
                                                       "notify_each_sale": "yes"})
    assert refused.status_code == 422 and "'nope' is not an email address" in html.unescape(refused.text)
    assert "sales@store.test, nope" in html.unescape(refused.text)
    nul = staff.post("/admin/mail/settings", data={"seller_addresses": "sales@store.test\x00"})
    assert nul.status_code == 422 and "Seller's addresses cannot hold NUL characters." in html.unescape(nul.text)
    [row] = rows(app, EmailSettings)
    assert row.seller_addresses == ["sales@store.test", "owner@store.test"] and not row.notify_each_sale


def test_the_emails_sent_are_paginated_filtered_by_recipient_and_open_as_sent(app):
    now = utcnow()
    with Session(app.state.engine) as session:
        for n in range(53):
            email = queue_rendered(session, key=f"k:{n:02d}", template="login_link", to="ann@example.com",
                                   subject=f"Login {n:02d}", text_body="Your code", html_body="<p>Your <b>code</b></p>")
            email.created_at = now - timedelta(minutes=n)
        failed = queue_rendered(session, key="payment-failed:pur_1/a", template="payment_failed", to="bob@example.com",
                                subject="Your payment failed", text_body="Update your card", html_body="<p>Card</p>")
        failed.status, failed.attempts, failed.last_error = "failed", 5, "550 mailbox unavailable"
        session.commit()
    staff = browser(app, "support")
    first = staff.text("/admin/mail/sent", params={"to": "Ann@Example.com"})
    assert first.count('data-email-key="k:') == 50 and "bob@example.com" not in first
    assert "Login 00" in first and "Login 52" not in first and "sent (accepted by the relay)" not in first
    assert 'href="/admin/mail/sent?to=ann%40example.com&amp;page=2"' in staff.get(
        "/admin/mail/sent", params={"to": "ann@example.com"}).text
    second = staff.text("/admin/mail/sent", params={"to": "ann@example.com", "page": "2"})
    assert second.count('data-email-key="k:') == 3 and "Login 52" in second
    for page in ("0", "x", "²", "99999"):
        assert staff.get("/admin/mail/sent", params={"page": page}).status_code == 200

    failures = staff.text("/admin/mail/sent", params={"status": "failed"})
    assert 'data-email-status="failed"' in failures and "550 mailbox unavailable" in failures
    assert 'data-email-key="k:' not in failures
    assert "No email to nobody@example.com" in staff.text("/admin/mail/sent", params={"to": "nobody@example.com"})

    link = re.search(r'href="(/admin/mail/sent/payment-failed[^"]+)"', staff.get("/admin/mail/sent").text).group(1)
    message = staff.get(link)
    assert message.status_code == 200
    page = html.unescape(message.text)
    assert "Your payment failed" in page and "550 mailbox unavailable" in page and "Update your card" in page
    assert re.search(r'<iframe sandbox srcdoc="[^"]*Card', message.text)
