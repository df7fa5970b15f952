"""Prometheus metrics every service exports on /metrics (see deploy/grafana/postsale.json)."""

from __future__ import annotations

from typing import Callable, Sequence

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

# -- HTTP ------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("postsale_http_requests_total", "HTTP requests answered, by route template and status",
                        ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram("postsale_http_request_duration_seconds",
                                 "Time from a request's arrival to the end of its answer, by route template and status",
                                 ["method", "route", "status"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

# -- outbox and consumers ----------------------------------------------------------------------------
OUTBOX_PUBLISHED = Counter("postsale_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OUTBOX_PARKED_TOTAL = Counter("postsale_outbox_parked_total",
                              "Outbox rows parked because the broker refused them for a reason retrying cannot fix",
                              ["topic"])
OUTBOX_BACKLOG = Gauge("postsale_outbox_backlog", "Outbox rows waiting to be published (neither sent nor parked)")
OUTBOX_OLDEST_AGE = Gauge("postsale_outbox_oldest_unsent_age_seconds",
                          "Age of the oldest outbox row waiting to be published; 0 when none waits")
OUTBOX_PARKED = Gauge("postsale_outbox_parked_rows", "Outbox rows parked, waiting for an operator to release them")
CONSUMED = Counter("postsale_events_consumed_total", "Events handled by a consumer", ["consumer", "event_type"])
DEAD_LETTERED = Counter("postsale_events_dead_lettered_total", "Records sent to a dead-letter topic", ["consumer"])
CONSUMER_LAG = Gauge("postsale_consumer_lag",
                     "Records not yet handled: the partition's end offset minus the group's committed offset",
                     ["group", "topic", "partition"])

# -- notifications: emails ----------------------------------------------------------------------------
EMAILS_SENT = Counter("postsale_emails_sent_total", "Emails the SMTP relay accepted", ["template"])
EMAIL_SEND_FAILURES = Counter("postsale_email_send_failures_total",
                              "Attempts to send an email that failed (each is retried with backoff)", ["template"])
EMAILS_FAILED = Counter("postsale_emails_failed_total", "Emails given up after their last failed attempt",
                        ["template"])

# -- checkout: subscriptions and dunning -------------------------------------------------------------
SUBSCRIPTIONS = Gauge("postsale_subscriptions",
                      "Subscriptions and payment plans by kind and status (past_due: a payment failed and is "
                      "being retried, i.e. in dunning)", ["kind", "status"])

Observer = Callable[[Engine], None]
"""Reads the service's database and sets gauges; run every POSTSALE_METRICS_INTERVAL_SECONDS."""


def count_rows(gauge: Gauge, model, columns: Sequence[str]) -> Observer:
    """An observer setting `gauge` (labelled by `columns`) to the rows of `model` per value of
    those columns; a value no row has any more goes back to 0."""
    seen: set[tuple[str, ...]] = set()

    def observe(engine: Engine) -> None:
        fields = [getattr(model, column) for column in columns]
        with Session(engine) as session:
            rows = session.exec(select(*fields, func.count()).group_by(*fields)).all()
        counts = {tuple(str(value) for value in row[:-1]): row[-1] for row in rows}
        for labels in seen - counts.keys():
            gauge.labels(*labels).set(0)
        for labels, count in counts.items():
            gauge.labels(*labels).set(count)
        seen.update(counts)

    return observe
