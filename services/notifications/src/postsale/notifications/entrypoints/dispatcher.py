"""Sends queued emails: rows with a due time, claimed, never a sleep in memory per email."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlmodel import Session

from postsale.notifications import handlers
from postsale.notifications.adapters.smtp import SmtpSender
from postsale.runtime import wakeups

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


def email_dispatcher(sender: SmtpSender, max_attempts: int, poll_interval: float = 1.0):
    def make(app: FastAPI):
        async def run() -> None:
            loop = asyncio.get_running_loop()
            due = asyncio.Event()
            unregister = wakeups.register(app.state.engine, handlers.DISPATCHER,
                                          lambda: loop.call_soon_threadsafe(due.set))
            try:
                while True:
                    due.clear()
                    try:
                        await asyncio.to_thread(send_due, app.state.engine, sender, max_attempts)
                    except Exception:
                        log.exception("email dispatcher failed; retrying")
                    try:
                        await asyncio.wait_for(due.wait(), timeout=poll_interval)
                    except asyncio.TimeoutError:
                        pass  # retries fall due with time, not with a commit
            finally:
                unregister()

        run.__name__ = "email-dispatcher"
        return run

    make.__name__ = "email-dispatcher"
    return make
