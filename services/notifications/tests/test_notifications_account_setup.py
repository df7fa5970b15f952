"""The "Set up your account" email, as notifications queues it from accounts' link event."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.contracts import AccountSetupLinkIssued
from postsale.notifications import handlers
from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
CONSUMER = next(s for s in SUBSCRIPTIONS if AccountSetupLinkIssued in s.handlers).consumer_name


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def link(url: str, reason: str = "welcome") -> AccountSetupLinkIssued:
    return AccountSetupLinkIssued(customer_id="cus_1", email="ann@example.com", expires_at=NOW + timedelta(days=14),
                                  url=url, reason=reason, issued_at=NOW)


def emails(engine) -> list[Email]:
    with Session(engine) as session:
        return list(session.exec(select(Email)).all())


def test_one_purchase_sends_one_setup_email_however_often_its_link_arrives(engine):
    event = link("http://accounts.test/setup?purchase=pur_1&token=abc")
    event_id = uuid.uuid4().hex
    assert apply_once(engine, CONSUMER, handlers.queue_account_setup_email, event, event_id)
    assert not apply_once(engine, CONSUMER, handlers.queue_account_setup_email, event, event_id)
    # Even under another event id (a republished event), the key keeps it to one email.
    apply_once(engine, CONSUMER, handlers.queue_account_setup_email, event, uuid.uuid4().hex)

    [email] = emails(engine)
    assert (email.key, email.template, email.to, email.customer_id) == (
        "account-setup:pur_1", "account_setup", "ann@example.com", "cus_1")
    assert email.subject == "Set up your account"
    assert "http://accounts.test/setup?purchase=pur_1&token=abc" in email.text_body
    assert 'href="http://accounts.test/setup?purchase=pur_1&amp;token=abc"' in email.html_body
    assert "Thank you for your purchase" in email.text_body and "12 December 2026" in email.text_body


def test_a_second_purchase_before_setting_up_sends_a_second_email(engine):
    apply_once(engine, CONSUMER, handlers.queue_account_setup_email,
               link("http://accounts.test/setup?purchase=pur_1&token=abc"), uuid.uuid4().hex)
    apply_once(engine, CONSUMER, handlers.queue_account_setup_email,
               link("http://accounts.test/setup?purchase=pur_2&token=def"), uuid.uuid4().hex)
    assert sorted(e.key for e in emails(engine)) == ["account-setup:pur_1", "account-setup:pur_2"]


def test_a_link_without_a_purchase_is_keyed_by_its_event(engine):
    event_id = uuid.uuid4().hex
    apply_once(engine, CONSUMER, handlers.queue_account_setup_email,
               link("http://accounts.test/setup?token=abc", reason="added_by_seller"), event_id)
    [email] = emails(engine)
    assert email.key == f"account-setup:{event_id}"
    assert "Thank you for your purchase" not in email.text_body and "An account is waiting" in email.text_body
