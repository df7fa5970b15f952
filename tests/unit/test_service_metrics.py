"""The services' own metrics: notifications' dispatcher counts emails the relay accepted, failed
attempts and emails given up, by template; checkout's gauge counts subscriptions by kind and
status (those past due are in dunning), as its app sets it up."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, create_engine

from postsale.checkout.adapters.tables import Base as CheckoutBase
from postsale.checkout.adapters.tables import Subscription

from postsale.notifications.adapters.tables import Base, Email
from postsale.notifications.entrypoints.dispatcher import send_due
from postsale.runtime import metrics
from postsale.runtime.db import create_tables, make_engine

pytestmark = pytest.mark.unit


class Relay:
    """An SMTP relay that accepts, or refuses, every email."""

    host, port = "127.0.0.1", 25  # what the dispatcher's spans name
    timeout = 20

    def __init__(self, up: bool) -> None:
        self.up = up

    @contextmanager
    def connection(self) -> Iterator[Relay]:
        yield self  # the batch's connection: this relay needs none

    def send(self, **_email) -> str:
        if not self.up:
            raise ConnectionRefusedError("relay down")
        return "queued"


def counted(name: str, template: str) -> float:
    return REGISTRY.get_sample_value(name, {"template": template}) or 0.0


def test_sent_failed_attempts_and_given_up_emails_are_counted_by_template(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    create_tables(engine)  # the outbox, for EmailSent
    Base.metadata.create_all(engine)
    template = f"test_{uuid.uuid4().hex[:8]}"
    with Session(engine) as session:
        for n in range(3):
            session.add(Email(key=f"{template}:{n}", template=template, to=f"buyer{n}@example.com", subject="Hi",
                              text_body="Hi", html_body="<p>Hi</p>"))
        session.commit()

    send_due(engine, Relay(up=False), max_attempts=1)  # each attempt fails, and is the last one
    assert counted("postsale_email_send_failures_total", template) == 3
    assert counted("postsale_emails_failed_total", template) == 3
    assert counted("postsale_emails_sent_total", template) == 0

    with Session(engine) as session:
        session.add(Email(key=f"{template}:later", template=template, to="late@example.com", subject="Hi",
                          text_body="Hi", html_body="<p>Hi</p>"))
        session.commit()
    send_due(engine, Relay(up=False), max_attempts=3)  # fails, will be retried: not given up
    assert counted("postsale_email_send_failures_total", template) == 4
    assert counted("postsale_emails_failed_total", template) == 3
    with Session(engine) as session:
        session.get(Email, f"{template}:later").next_attempt_at = session.get(Email, f"{template}:later").created_at
        session.commit()
    send_due(engine, Relay(up=True), max_attempts=3)
    assert counted("postsale_emails_sent_total", template) == 1
    engine.dispose()


def test_checkout_s_gauge_counts_subscriptions_by_kind_and_status(tmp_path):
    # No foreign keys enforced: the subscriptions alone, without the purchases they came from.
    engine = create_engine(f"sqlite:///{tmp_path / 'checkout.db'}")
    CheckoutBase.metadata.create_all(engine)
    observe = metrics.count_rows(metrics.SUBSCRIPTIONS, Subscription, ("kind", "status"))  # as checkout's app does
    now = datetime.now(timezone.utc)

    def subscription(n: int, kind: str, status: str) -> Subscription:
        return Subscription(id=f"sub_{n}", purchase_id=f"pur_{n}", customer_id=f"cus_{n}", offer_id="off_1", kind=kind,
                            status=status, amount=1000, currency="EUR", interval="month", interval_count=1,
                            provider="sandbox", current_period_start=now, current_period_end=now + timedelta(days=30))

    with Session(engine) as session:
        session.add_all([subscription(1, "subscription", "active"), subscription(2, "subscription", "past_due"),
                         subscription(3, "subscription", "past_due"), subscription(4, "payment_plan", "trialing")])
        session.commit()
    observe(engine)

    def gauge(kind: str, status: str) -> float | None:
        return REGISTRY.get_sample_value("postsale_subscriptions", {"kind": kind, "status": status})

    assert (gauge("subscription", "active"), gauge("subscription", "past_due"), gauge("payment_plan", "trialing")) == (
        1, 2, 1)
    with Session(engine) as session:  # one recovers from dunning, one gives up
        session.get(Subscription, "sub_2").status = "active"
        session.get(Subscription, "sub_3").status = "cancelled"
        session.commit()
    observe(engine)
    assert (gauge("subscription", "active"), gauge("subscription", "past_due"), gauge("subscription", "cancelled")) == (
        2, 0, 1)
    engine.dispose()
