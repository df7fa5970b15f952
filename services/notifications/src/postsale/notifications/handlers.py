"""Notifications use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session, select

from postsale.contracts import EmailSent, PurchaseCompleted
from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import SERVICE
from postsale.runtime import wakeups
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.settings import PublicUrls

SOURCE = f"/postsale/{SERVICE}"
DISPATCHER = "email-dispatcher"
_emails = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "emails"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
)
_emails.filters["money"] = lambda amount, currency: f"{amount / 100:,.2f} {currency}"


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


def queue_purchase_confirmation(session: Session, event: PurchaseCompleted, _event_id: str) -> None:
    """Started by `PurchaseCompleted`: the confirmation with a login button, unless the offer turned it off."""
    if not event.send_confirmation_email:
        return
    queue_email(session, key=f"purchase-confirmation:{event.purchase_id}", template="purchase_confirmation",
                to=event.email, customer_id=event.customer_id, purchase=event, library_url=PublicUrls().library_url)


def due_emails(session: Session, limit: int) -> list[Email]:
    """Claims queued emails that are due; replicas skip each other's claims."""
    return list(session.exec(
        select(Email).where(Email.status == "queued", Email.next_attempt_at <= utcnow())
        .order_by(Email.created_at).limit(limit).with_for_update(skip_locked=True)
    ).all())


def mark_sent(session: Session, email: Email) -> None:
    email.status, email.sent_at, email.attempts, email.last_error = "sent", utcnow(), email.attempts + 1, None
    session.add(email)
    publish_later(session, EmailSent(email_key=email.key, template=email.template, to=email.to,
                                     customer_id=email.customer_id, sent_at=email.sent_at), source=SOURCE)


def mark_failed_attempt(session: Session, email: Email, error: str, max_attempts: int) -> None:
    """Retried with backoff (30 s, 1 min, 2 min, ... capped at 1 h), then given up as failed."""
    email.attempts += 1
    email.last_error = error[:2000]
    if email.attempts >= max_attempts:
        email.status = "failed"
    else:
        email.next_attempt_at = utcnow() + timedelta(seconds=min(30 * 2 ** (email.attempts - 1), 3600))
    session.add(email)
