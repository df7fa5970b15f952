"""The seller's email templates: every email is listed with its variables, an edited template is
used by the next email, a template reads only what it is given (a sandbox), a broken one is
refused with the reason, and the HTML takes the seller's theme."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlmodel import Session

from postsale.contracts import ThemeChanged, examples
from postsale.notifications import catalogue, templates
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.rendering import Parts, TemplateProblem, default_parts
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from notifications_support import deliver, emails

pytestmark = pytest.mark.unit
PURCHASE = next(e for e in examples.EXAMPLES if type(e).__name__ == "PurchaseCompleted")


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def test_every_email_is_listed_with_its_variables_and_renders_with_the_examples(engine):
    names = catalogue.built_in_names()
    for expected in ("purchase_confirmation", "seller_sale", "download_link", "card_expiring", "access_ending",
                     "payment_failed", "login_link", "password_reset", "account_setup"):
        assert expected in names
    with Session(engine) as session:
        for name in names:
            assert catalogue.spec_of(name).variables, name
            subject, text, html = templates.preview(session, name)
            assert subject and text.strip() and "<html>" in html and "[" not in subject, name


def test_an_edited_template_is_used_by_the_next_email_and_reset_brings_the_default_back(engine):
    with Session(engine) as session:
        templates.save(session, "purchase_confirmation", Parts(
            subject="Welcome aboard, {{ purchase.offer_name }}!",
            text="Hi! You bought {{ purchase.offer_name }} for {{ purchase.amount.amount | money(purchase.amount.currency) }}.",
            html="<p>Hi! <a href=\"{{ library_url }}\" style=\"{{ style.button }}\">Start</a></p>"))
        session.commit()
    deliver(engine, PURCHASE)
    email = emails(engine)[f"purchase-confirmation:{PURCHASE.purchase_id}"]
    assert email.subject == "Welcome aboard, Creator Membership: lifetime access!"
    assert email.text_body == "Hi! You bought Creator Membership: lifetime access for 49.00 EUR."
    assert "<p>Hi! <a href=" in email.html_body

    with Session(engine) as session:
        assert templates.reset(session, "purchase_confirmation")
        session.commit()
        assert templates.preview(session, "purchase_confirmation")[0] == "Your purchase: Creator Membership: lifetime access"


@pytest.mark.parametrize(("html", "reason"), [
    ("{{ purchase.__class__.__mro__ }}", "unsafe"),
    ("{{ secret_key }}", "offers no variable secret_key"),
    ("{% if %}", "TemplateSyntaxError"),
    ("{{ purchase.no_such_field }}", "no_such_field"),
])
def test_a_template_reads_only_what_it_is_given_and_a_broken_one_is_refused_with_the_reason(engine, html, reason):
    with Session(engine) as session:
        with pytest.raises(TemplateProblem) as refused:
            templates.save(session, "purchase_confirmation", Parts(subject="Hi", text="Hi", html=html))
        assert reason in str(refused.value)
        assert templates.preview(session, "purchase_confirmation")[0].startswith("Your purchase:")


def test_the_html_takes_the_sellers_theme(engine):
    deliver(engine, ThemeChanged(settings={"background_color": "#101820", "button_background_color": "#ffd166",
                                           "store_name": "Ann's Studio"},
                                 changed_at=datetime(2026, 11, 1, tzinfo=timezone.utc)))
    deliver(engine, PURCHASE)
    html = emails(engine)[f"purchase-confirmation:{PURCHASE.purchase_id}"].html_body
    assert "background: #101820" in html and "background: #ffd166" in html and "Ann&#39;s Studio" in html


def test_a_sellers_own_template_offers_the_follow_up_variables(engine):
    with Session(engine) as session:
        templates.save(session, "week-one", Parts(subject="How is {{ offer_name }} going?",
                                                 text="Next: {{ offer_url }}", html="<p>{{ email }}</p>"))
        session.commit()
        assert "week-one" in templates.names(session)
        assert catalogue.spec_of("week-one").marketing
        subject, text, html = templates.preview(session, "week-one")
    assert subject == "How is Creator Membership going?" and "Unsubscribe" in html
    assert default_parts("week-one") is None


def test_the_emails_page_lists_every_email():
    page = (Path(__file__).parents[3] / "docs" / "emails.md").read_text()
    missing = [name for name in catalogue.built_in_names() if f"### `{name}`" not in page]
    assert missing == [], f"docs/emails.md lacks {missing}: add each with its variables (GET /admin/templates/<name>)"
