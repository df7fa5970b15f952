"""Queueing an email: rendered from its templates now, sent by the dispatcher later.

Runs inside the caller's transaction and never commits. One key, one email: asking again for a
key that exists changes nothing, so a redelivered event never sends twice.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session

from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import SellerNotifications
from postsale.runtime import wakeups

DISPATCHER = "email-dispatcher"
_emails = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "emails"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
)
_emails.filters["money"] = lambda amount, currency: f"{amount / 100:,.2f} {currency}"
_emails.filters["day"] = lambda moment: moment.strftime("%d %B %Y")


def render(template: str, **context) -> tuple[str, str, str]:
    """Subject, text body and HTML body of an email template."""
    subject = _emails.get_template(f"{template}.subject.txt").render(**context).strip()
    return subject, _emails.get_template(f"{template}.txt").render(**context), _emails.get_template(f"{template}.html").render(**context)


def queue_email(session: Session, *, key: str, template: str, to: str, customer_id: str | None, **context) -> Email | None:
    """Queues an email unless one with this key exists: one key, one email, however often asked."""
    if session.get(Email, key) is not None:
        return None
    subject, text_body, html_body = render(template, **context)
    email = Email(key=key, template=template, to=to, customer_id=customer_id, subject=subject,
                  text_body=text_body, html_body=html_body)
    session.add(email)
    wakeups.wake_after_commit(session, DISPATCHER)
    return email


def queue_for_sellers(session: Session, *, key: str, template: str, **context) -> list[Email]:
    """One email per address in `NOTIFICATIONS_SELLER_EMAILS` (none when it is empty), each keyed
    `<key>:<address>`."""
    queued = []
    for address in SellerNotifications().seller_emails:
        email = queue_email(session, key=f"{key}:{address.lower()}", template=template, to=address, customer_id=None,
                            **context)
        if email is not None:
            queued.append(email)
    return queued

