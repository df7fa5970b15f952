"""Queueing an email: rendered from its template now (the seller's, in the seller's theme), sent
by the dispatcher later.

Runs inside the caller's transaction and never commits. One key, one email: asking again for a
key that exists changes nothing, so a redelivered event never sends twice. A marketing email
carries its unsubscribe link, and to a suppressed address it is logged as `suppressed`, not sent;
a transactional email is never suppressed.
"""

from __future__ import annotations

from sqlmodel import Session

from postsale.notifications import rendering, suppressions
from postsale.notifications.adapters.tables import Email, EmailSettings
from postsale.notifications.config import SellerNotifications
from postsale.runtime import wakeups
from postsale.runtime.db import insert_once, remembered
from postsale.runtime.settings import from_environment

DISPATCHER = "email-dispatcher"


def queue_email(session: Session, *, key: str, template: str, to: str, customer_id: str | None,
                marketing: bool = False, **context) -> None:
    """Queues an email unless one with this key exists: one key, one email, however often asked."""
    unsubscribe_url = preferences_url = None
    if marketing:
        row = suppressions.recipient(session, to)
        unsubscribe_url, preferences_url = suppressions.unsubscribe_url(row), suppressions.preferences_url(row)
    subject, text_body, html_body = rendering.render(session, template, {
        "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url, **context})
    email = Email(key=key, template=template, to=to, customer_id=customer_id, subject=subject,
                  text_body=text_body, html_body=html_body, marketing=marketing, unsubscribe_url=unsubscribe_url)
    if marketing and suppressions.is_suppressed(session, to):
        email.status = "suppressed"
    # Inserted unless the key exists, without reading it first: every purchase queues several
    # emails, and a repeat (rare) only renders for nothing.
    if insert_once(session, email) and email.status == "queued":
        wakeups.wake_after_commit(session, DISPATCHER)


def queue_rendered(session: Session, *, key: str, template: str, to: str, subject: str, text_body: str,
                   html_body: str) -> Email:
    """Queues an email rendered already (the seller's test send); a key that exists fails the flush."""
    email = Email(key=key, template=template, to=to, customer_id=None, subject=subject, text_body=text_body,
                  html_body=html_body)
    session.add(email)
    wakeups.wake_after_commit(session, DISPATCHER)
    return email


def email_settings(session: Session) -> EmailSettings | None:
    """The seller's email settings, when set: read once per transaction."""
    return remembered(session, EmailSettings, "store", lambda: session.get(EmailSettings, "store"))


def seller_addresses(session: Session) -> tuple[str, ...]:
    """Where the seller's emails go: the addresses set through the admin API, else
    `NOTIFICATIONS_SELLER_EMAILS`."""
    settings = email_settings(session)
    if settings is not None and settings.seller_addresses:
        return tuple(settings.seller_addresses)
    return from_environment(SellerNotifications).seller_emails


def queue_for_sellers(session: Session, *, key: str, template: str, **context) -> None:
    """One email per seller address (none when there is none), each keyed `<key>:<address>`."""
    for address in seller_addresses(session):
        queue_email(session, key=f"{key}:{address.lower()}", template=template, to=address, customer_id=None,
                    **context)
