"""The back office's follow-ups as notifications serves them, over HTTP without a browser: the
owner creates follow-up sequences and rules (each once, however often its form is sent) with
templates a follow-up can send, sees clear refusals that change nothing, and deletes them after
confirming."""

from __future__ import annotations

import html
import re

import pytest

from sqlmodel import Session

from postsale.notifications import rules, sequences, templates
from postsale.notifications.adapters.tables import FollowUpRule, Sequence
from postsale.notifications.rendering import Parts
from test_notifications_backoffice_emails import browser, rows, service_app

pytestmark = pytest.mark.unit
SEQUENCE = {"name": "Welcome", "offer_id": "off_1", "delay": ["3"], "unit": ["days"], "template": ["week_one"]}
RULE = {"trigger": "no_login", "offer_id": "off_1", "days": "3", "template": "come_back", "link_offer_id": "off_2"}


@pytest.fixture
def app(tmp_path, monkeypatch):
    for app in service_app(tmp_path, monkeypatch):
        with Session(app.state.engine) as session:  # the seller's own emails, written with a follow-up's variables
            templates.save(session, "week_one", Parts("Week one of {{ offer_name }}", "Hello {{ email }}, step {{ step }}.",
                                                      "<p>Hello {{ email }}</p>"))
            templates.save(session, "come_back", Parts("Come back", "See {{ offer_url }}", "<p>{{ library_url }}</p>"))
            session.commit()
        yield app


def test_sequences_are_listed_created_with_steps_and_deleted_after_confirmation(app):
    staff = browser(app)
    assert "No follow-up sequence yet" in staff.text("/admin/mail/sequences")
    form = staff.text("/admin/mail/sequences/new")
    assert form.count('name="delay"') == 5 and 'value="week_one"' in form and 'value="come_back"' in form
    # Postsale's own emails read what their event brings (a checkout, a purchase): not offered here.
    assert 'value="abandoned_checkout"' not in form and "data-no-follow-up-templates" not in form
    token = staff.submission("/admin/mail/sequences/new")
    for data, says in (
        ({"name": "N", "offer_id": "off_1", "delay": ["", ""], "unit": ["days", "days"], "template": ["", ""]},
         "Steps: give at least one step"),
        ({"name": "N", "offer_id": "off_1", "delay": ["x"], "unit": ["days"], "template": ["week_one"]},
         "Step 1: give the delay as a whole number"),
        ({"name": "N", "offer_id": "off_1", "delay": ["2"], "unit": ["fortnights"], "template": ["week_one"]},
         "Step 1: choose days or hours"),
        ({"name": "N", "offer_id": "off_1", "delay": ["2", "3"], "unit": ["days"], "template": ["week_one"]},
         "Steps: each row needs its delay, its unit and its template"),
        ({"name": "N", "offer_id": "off_1", "delay": ["800"], "unit": ["days"], "template": ["week_one"]},
         "Step 1: must be at most 730"),
        ({"name": "N", "offer_id": "off 1", "delay": ["1"], "unit": ["days"], "template": ["week_one"]},
         "Offer: give the offer's id"),
        ({"name": "", "offer_id": "off_1", "delay": ["1"], "unit": ["days"], "template": ["week_one"]},
         "Name: cannot be empty"),
        ({"name": "N", "offer_id": "off_1", "delay": ["1"], "unit": ["days"], "template": ["nothing-here"]},
         "Email template: there is no email template nothing-here"),
        ({"name": "N", "offer_id": "off_1", "delay": ["1"], "unit": ["days"], "template": ["abandoned_checkout"]},
         "Email template: the email template abandoned_checkout cannot be a follow-up (UndefinedError: 'checkout' is "
         "undefined): a follow-up's email has only email, offer_name, products, offer_url, library_url, step"),
    ):
        refused = staff.post("/admin/mail/sequences/new", data={**data, "submission": token})
        assert refused.status_code == 422, data
        assert says in html.unescape(refused.text), (data, refused.text)
        assert f'name="submission" value="{token}"' in refused.text  # the same form, sent again, makes it once
    assert rows(app, Sequence) == []

    made = staff.post("/admin/mail/sequences/new", data={
        "name": "Welcome", "offer_id": "off_1", "delay": ["7", "12", ""], "unit": ["days", "hours", "days"],
        "template": ["come_back", "week_one", ""], "submission": token})
    assert made.status_code == 303
    page = staff.text(made.headers["location"])
    assert "The sequence is saved" in page
    [sequence] = rows(app, Sequence)
    assert sequence.steps == [{"delay_hours": 12, "template": "week_one"},
                              {"delay_hours": 168, "template": "come_back"}]
    assert f'data-sequence-id="{sequence.id}"' in page and "12 hours after" in page and "7 days after" in page
    assert "Yes, delete “Welcome”" in page
    deleted = staff.post(f"/admin/mail/sequences/{sequence.id}/delete", data={})
    assert deleted.status_code == 303 and "The sequence is deleted" in staff.text(deleted.headers["location"])
    assert rows(app, Sequence) == []
    assert staff.post(f"/admin/mail/sequences/{sequence.id}/delete", data={}).status_code == 404


def test_rules_are_created_with_clear_refusals_and_deleted(app):
    staff = browser(app)
    rule = {"trigger": "bought_without", "offer_id": "off_1", "other_offer_id": "off_2", "days": "3",
            "template": "come_back", "link_offer_id": "off_2", "submission": staff.submission("/admin/mail/rules/new")}
    for change, says in (({"other_offer_id": ""}, "Second offer: this kind of rule needs it"),
                         ({"days": "0"}, "Days: this kind of rule needs 1 or more"),
                         ({"days": "x"}, "Days: give a whole number"),
                         ({"trigger": "whenever"}, "When: choose what the customer did"),
                         ({"template": "nothing"}, "Email template: there is no email template nothing"),
                         ({"template": "access_ending"}, "the email template access_ending cannot be a follow-up"),
                         ({"link_offer_id": "off\x002"}, "Offers and products are ids")):
        refused = staff.post("/admin/mail/rules/new", data={**rule, **change})
        assert refused.status_code == 422 and says in html.unescape(refused.text), change
    assert rows(app, FollowUpRule) == []
    made = staff.post("/admin/mail/rules/new", data=rule)
    assert made.status_code == 303
    page = staff.text(made.headers["location"])
    [saved_rule] = rows(app, FollowUpRule)
    assert "The rule is saved" in page and f'data-rule-id="{saved_rule.id}"' in page
    assert "Bought off_1 but not off_2 within 3 days" in re.sub(r"<[^>]+>", "", page)
    assert staff.post(f"/admin/mail/rules/{saved_rule.id}/delete", data={}).status_code == 303
    assert rows(app, FollowUpRule) == []


@pytest.mark.parametrize(("path", "fields", "model"), [
    ("/admin/mail/sequences", SEQUENCE, Sequence),
    ("/admin/mail/rules", RULE, FollowUpRule),
])
def test_a_form_sent_twice_makes_one_and_both_answers_lead_to_the_same_page(app, path, fields, model):
    owner = browser(app)
    token = owner.submission(f"{path}/new")
    first = owner.post(f"{path}/new", data={**fields, "submission": token})
    second = owner.post(f"{path}/new", data={**fields, "submission": token})  # a double click, a resent form
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"{path}?done=created"
    [made] = rows(app, model)
    assert made.submission == token
    other = owner.post(f"{path}/new", data={**fields, "submission": owner.submission(f"{path}/new")})
    assert other.status_code == 303 and len(rows(app, model)) == 2  # a new form makes a new one


@pytest.mark.parametrize(("path", "fields", "model"), [
    ("/admin/mail/sequences", SEQUENCE, Sequence),
    ("/admin/mail/rules", RULE, FollowUpRule),
])
@pytest.mark.parametrize("token", [None, "", "short", "x" * 65, "not a token!!!!!!!!!"])
def test_a_form_without_a_valid_submission_token_is_refused_and_makes_nothing(app, path, fields, model, token):
    owner = browser(app)
    refused = owner.post(f"{path}/new", data={**fields, **({} if token is None else {"submission": token})})
    assert refused.status_code == 422
    assert "This form was not sent as the page made it" in html.unescape(refused.text)
    assert re.search(r'name="submission" value="[A-Za-z0-9_-]{16,64}"', refused.text)  # a fresh one, to send again
    assert rows(app, model) == []


def test_a_follow_up_whose_template_cannot_be_sent_says_so_in_its_list(app):
    """One saved before templates were checked (with one of Postsale's own emails): its steps send
    nothing, and the lists say which."""
    with Session(app.state.engine) as session:
        sequences.create_sequence(session, offer_id="off_1", name="Old", steps=[
            {"delay_hours": 24, "template": "week_one"}, {"delay_hours": 48, "template": "abandoned_checkout"}])
        rules.create_rule(session, trigger="no_login", offer_id="off_1", days=3, template="login_link",
                          link_offer_id="off_2")
        session.commit()
    staff = browser(app)
    listed = staff.text("/admin/mail/sequences")
    assert listed.count("data-unfit-template") == 1
    assert re.search(r"abandoned_checkout</a> <strong[^>]*data-unfit-template>sends nothing", listed)
    assert "sends nothing" in staff.text("/admin/mail/rules")
