"""Sends queued emails: rows with a due time, claimed, never a sleep in memory per email."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI
from opentelemetry.trace import SpanKind
from sqlmodel import Session

from postsale.notifications import handlers
from postsale.notifications.adapters.smtp import RelayRefused, SmtpSender
from postsale.notifications.emails import DISPATCHER
from postsale.runtime import tracing, wakeups
from postsale.runtime.clock import utcnow
from postsale.runtime.metrics import EMAIL_SEND_FAILURES, EMAILS_FAILED, EMAILS_SENT
from postsale.runtime.service import BackgroundTask

log = logging.getLogger(__name__)
BATCH = 20


def send_due(engine, sender: SmtpSender, max_attempts: int) -> bool:
    """Sends what is due; True when more may be due at once. An email is sent at least once:
    a crash after the SMTP server took it but before it was marked sent sends it again.

    The batch is claimed (and committed) first and shares one SMTP connection; each email's
    outcome is committed as soon as it is known."""
    # Nothing is read back after a commit, so committing need not expire (and reload) the batch.
    with Session(engine, expire_on_commit=False) as session, sender.connection() as smtp:
        # No email starts once connecting and sending (each up to the relay's timeout) could outlast the
        # lease: then a replica claims it only when the relay is slower than that over several steps
        # (and the copy it sends has the same Message-ID).
        cutoff = utcnow() + handlers.CLAIM_LEASE - timedelta(seconds=2 * sender.timeout + 5)
        emails = handlers.claim_due_emails(session, limit=BATCH)
        if not emails:
            return False
        session.commit()
        for sent, email in enumerate(emails):
            if utcnow() > cutoff:  # a slow relay: the rest go when their lease is over
                log.warning("the SMTP relay is slow: %s email(s) of this batch wait for their lease to end",
                            len(emails) - sent)
                return False
            # A span per attempt: the SMTP conversation, with its outcome.
            sending = tracing.start_span("email send", kind=SpanKind.CLIENT, attributes={
                "postsale.email.key": email.key, "postsale.email.template": email.template,
                "postsale.email.attempt": email.attempts + 1, "server.address": sender.host, "server.port": sender.port})
            try:
                message_id = smtp.send(to=email.to, subject=email.subject, text_body=email.text_body,
                                         html_body=email.html_body, key=email.key,
                                         list_unsubscribe=email.unsubscribe_url)
            except Exception as exc:  # noqa: BLE001 - any SMTP failure is retried later
                tracing.end_span(sending, exc)
                log.warning("sending %s to %s failed: %r", email.key, email.to, exc)
                handlers.mark_failed_attempt(session, email, repr(exc), max_attempts,
                                             refused=isinstance(exc, RelayRefused))
                counters = [EMAIL_SEND_FAILURES] + ([EMAILS_FAILED] if email.status == "failed" else [])
            else:
                tracing.end_span(sending)
                handlers.mark_sent(session, email, message_id)
                counters = [EMAILS_SENT]
            # One commit per email, so one bad address never holds back the others' state.
            session.commit()
            for counter in counters:
                counter.labels(template=email.template).inc()
        return len(emails) == BATCH


def email_dispatcher(sender: SmtpSender, max_attempts: int, poll_interval: float = 1.0) -> BackgroundTask:
    """Sends emails as they are queued; the poll interval is when retries fall due."""

    async def email_dispatcher(app: FastAPI) -> None:
        engine = app.state.engine
        await wakeups.run_loop(engine, DISPATCHER,
                               lambda: asyncio.to_thread(send_due, engine, sender, max_attempts),
                               poll_interval=poll_interval)

    return email_dispatcher
