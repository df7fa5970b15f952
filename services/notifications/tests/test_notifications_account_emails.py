"""The account emails notifications queues from accounts' restricted link events: a login link with
its code, a password reset, and the confirmation of a new login email with a notice to the old one."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.contracts import EmailChangeRequested, LoginLinkIssued, PasswordResetRequested
from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
LINKS = next(s for s in SUBSCRIPTIONS if LoginLinkIssued in s.handlers)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def deliver(engine, event, event_id: str | None = None) -> bool:
    return apply_once(engine, LINKS.consumer_name, LINKS.handlers[type(event)], event, event_id or uuid.uuid4().hex)


def emails(engine) -> list[Email]:
    with Session(engine) as session:
        return list(session.exec(select(Email).order_by(Email.key)).all())


def test_a_login_link_email_carries_the_link_and_the_code_once(engine):
    event = LoginLinkIssued(customer_id="cus_1", email="ann@example.com", expires_at=NOW + timedelta(minutes=15),
                            url="http://accounts.test/login/link?token=abc", code="123456", issued_at=NOW)
    event_id = uuid.uuid4().hex
    assert deliver(engine, event, event_id) and not deliver(engine, event, event_id)
    [email] = emails(engine)
    assert (email.key, email.template, email.to, email.subject) == (
        f"login-link:{event_id}", "login_link", "ann@example.com", "Your login link")
    assert "http://accounts.test/login/link?token=abc" in email.text_body and "123456" in email.text_body
    assert 'href="http://accounts.test/login/link?token=abc"' in email.html_body and "123456" in email.html_body
    assert "press" in email.text_body  # the page's button signs in, not the link itself


def test_a_password_reset_email_carries_its_link_and_code(engine):
    deliver(engine, PasswordResetRequested(customer_id="cus_1", email="bo@example.com",
                                           expires_at=NOW + timedelta(minutes=30), requested_at=NOW,
                                           url="http://accounts.test/password/reset/confirm?token=def", code="654321"))
    [email] = emails(engine)
    assert (email.template, email.to, email.subject) == ("password_reset", "bo@example.com", "Reset your password")
    assert "token=def" in email.text_body and "654321" in email.text_body


def test_a_new_login_email_is_confirmed_at_the_new_address_and_the_old_one_is_told(engine):
    deliver(engine, EmailChangeRequested(customer_id="cus_1", email="cy@old.example", new_email="cy@new.example",
                                         expires_at=NOW + timedelta(hours=24), requested_at=NOW,
                                         url="http://accounts.test/account/email/confirm?token=ghi"))
    notice, confirm = emails(engine)  # by key: `email-change-notice:` sorts first
    assert (confirm.to, confirm.template) == ("cy@new.example", "email_change")
    assert "token=ghi" in confirm.text_body
    assert (notice.to, notice.template) == ("cy@old.example", "email_change_notice")
    assert "token=ghi" not in notice.text_body + notice.html_body  # the link goes to the new address only
