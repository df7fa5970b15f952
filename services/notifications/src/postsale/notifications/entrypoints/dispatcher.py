"""Sends queued emails: rows with a due time, claimed, never a sleep in memory per email."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlmodel import Session

from postsale.notifications import handlers
from postsale.notifications.adapters.smtp import SmtpSender

log = logging.getLogger(__name__)


def send_due(engine, sender: SmtpSender, max_attempts: int) -> int:
    """Sends what is due; returns how many went out. An email is sent at least once: a crash
    after the SMTP server took it but before it was marked sent sends it again."""
    with Session(engine) as session:
        emails = handlers.due_emails(session)
        sent = 0
        for email in emails:
            try:
                sender.send(to=email.to, subject=email.subject, text_body=email.text_body,
                            html_body=email.html_body, key=email.key)
            except Exception as exc:  # noqa: BLE001 - any SMTP failure is retried later
                log.warning("sending %s to %s failed: %r", email.key, email.to, exc)
                handlers.mark_failed_attempt(session, email, repr(exc), max_attempts)
            else:
                handlers.mark_sent(session, email)
                sent += 1
            # One commit per email, so one bad address never holds back the others' state.
            session.commit()
        return sent


def email_dispatcher(sender: SmtpSender, max_attempts: int, poll_interval: float = 0.2):
    def make(app: FastAPI):
        async def run() -> None:
            while True:
                try:
                    sent = await asyncio.to_thread(send_due, app.state.engine, sender, max_attempts)
                    if sent:
                        app.state.relay.wake()
                except Exception:
                    log.exception("email dispatcher failed; retrying")
                await asyncio.sleep(poll_interval)

        run.__name__ = "email-dispatcher"
        return run

    make.__name__ = "email-dispatcher"
    return make
