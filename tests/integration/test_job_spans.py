"""Spans of the background work, exported over OTLP to a receiver in the test: each row the
shared scheduler runs (checkout's renewals, entitlements' reviews, notifications' reminders) is
a span of its own trace, which the events it queues continue; each email the dispatcher hands
to the SMTP relay is a client span with the email's key, template, attempt and outcome."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, SQLModel

from postsale.contracts import ProductPublished
from postsale.notifications.adapters.smtp import SmtpSender
from postsale.notifications.adapters.tables import Email
from postsale.notifications.entrypoints.dispatcher import send_due
from postsale.runtime import tracing
from postsale.runtime.db import make_engine
from postsale.runtime.messaging import publish_later
from postsale.runtime.messaging.outbox import OutboxMessage
from postsale.runtime.scheduler import DueRow, Scheduler, pending_index
from postsale_local.processes import free_port
from postsale_local.smtp import SmtpInbox
from tests.otlp import OtlpReceiver

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


class Renewal(DueRow, table=True):
    __tablename__ = "test_span_renewals"
    __table_args__ = (pending_index("test_span_renewals"),)


@pytest.fixture
def receiver(monkeypatch):
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        tracing.configure_tracing("jobs")
        yield running
        # Later tests' spans go nowhere, not to a receiver that is gone.
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.configure_tracing("tests")


def test_each_scheduled_row_is_a_span_and_the_events_it_queues_continue_its_trace(receiver, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    SQLModel.metadata.create_all(engine, tables=[Renewal.__table__, OutboxMessage.__table__])
    with Session(engine) as session:
        session.add_all([Renewal(id="renew", due_at=T0 - timedelta(minutes=1)),
                         Renewal(id="broken", due_at=T0 - timedelta(minutes=2))])
        session.commit()

    def renew(session: Session, row: Renewal, now: datetime) -> None:
        if row.id == "broken":
            raise RuntimeError("the provider said no")
        publish_later(session, ProductPublished(product_id="prod_renewed", name="Renewed", delivery_type="membership",
                                                published_at=now), source="/tests")

    scheduler = Scheduler(engine, "renewals", Renewal, renew, clock=lambda: T0)
    assert scheduler.run_due() == 2
    tracing.flush()
    spans = receiver.wait_for(lambda received: sum(s.name == "renewals run" for s in received) == 2)
    runs = {s.attributes["postsale.scheduler.row_id"]: s for s in spans if s.name == "renewals run"}
    done, failed = runs["renew"], runs["broken"]
    assert (done.service, done.kind, done.parent_span_id) == ("postsale-jobs", "internal", "")
    assert done.attributes["postsale.outcome"] == "done" and done.attributes["postsale.scheduler.attempt"] == 1
    assert done.attributes["postsale.scheduler.due_at"] == (T0 - timedelta(minutes=1)).isoformat()
    assert (failed.status_code, failed.attributes["postsale.outcome"]) == (2, "retry scheduled")
    assert done.trace_id != failed.trace_id, "each run is a trace of its own"
    # The event the run queued is a child of it: its ce_traceparent names the run's trace.
    [create] = [s for s in spans if s.name.endswith(" create") and s.trace_id == done.trace_id]
    assert create.parent_span_id == done.span_id
    with Session(engine) as session:
        [row] = session.query(OutboxMessage).all()
    assert done.trace_id in row.headers
    engine.dispose()


def test_each_email_handed_to_the_relay_is_a_client_span_with_its_outcome(receiver, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'emails.db'}")
    SQLModel.metadata.create_all(engine, tables=[Email.__table__, OutboxMessage.__table__])
    with Session(engine) as session:
        session.add(Email(key="purchase-confirmation:pur_1", template="purchase_confirmation", to="ann@example.com",
                          subject="Your purchase", text_body="Thanks", html_body="<p>Thanks</p>"))
        session.commit()
    inbox = SmtpInbox()
    inbox.start()
    try:
        assert send_due(engine, SmtpSender("127.0.0.1", inbox.port, from_address="shop@example.com"), 8) is False
    finally:
        inbox.stop()
    with Session(engine) as session:
        session.add(Email(key="login-link:evt_1", template="login_link", to="bob@example.com",
                          subject="Your link", text_body="Link", html_body="<p>Link</p>"))
        session.commit()
    # Nothing listens there: the relay is down.
    send_due(engine, SmtpSender("127.0.0.1", free_port(), from_address="shop@example.com"), 8)
    assert [m["X-Postsale-Email-Key"] for m in inbox.messages] == ["purchase-confirmation:pur_1"]

    tracing.flush()
    spans = receiver.wait_for(lambda received: sum(s.name == "email send" for s in received) == 2)
    sent = {s.attributes["postsale.email.key"]: s for s in spans if s.name == "email send"}
    confirmation, link = sent["purchase-confirmation:pur_1"], sent["login-link:evt_1"]
    assert confirmation.kind == "client" and confirmation.service == "postsale-jobs"
    assert confirmation.attributes["postsale.email.template"] == "purchase_confirmation"
    assert (confirmation.attributes["postsale.email.attempt"], confirmation.status_code) == (1, 0)
    assert confirmation.attributes["server.address"] == "127.0.0.1"
    assert link.status_code == 2, "a refused connection is an error span"
    assert "ann@example.com" not in str(confirmation.attributes), "no address in the spans"
    engine.dispose()
