"""The real components every integration and end-to-end test shares, started once per run.

Kafka, PostgreSQL and stripe-mock come from `postsale_local`: containers where a Docker
engine answers, local processes otherwise, or what KAFKA_BOOTSTRAP_SERVERS and
POSTSALE_TEST_POSTGRES_URL name. A component that cannot start fails the tests that need it;
nothing is skipped.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from postsale_local.kafka import external_bootstrap_servers, local_kafka
from postsale_local.postgres import postgres_server
from postsale_local.smtp import SmtpInbox
from postsale_local.stripe_mock import StripeMock, ensure_stripe_mock


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    external = external_bootstrap_servers()
    if external:
        yield external
        return
    cluster = local_kafka(tmp_path_factory.mktemp("kafka"))
    cluster.start()
    try:
        yield cluster.bootstrap_servers
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres():
    # Its own temporary folder: pytest's are private to root, and the server runs as `postgres`.
    server = postgres_server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stripe_mock() -> Iterator[StripeMock]:
    ensure_stripe_mock()
    with StripeMock() as mock:
        yield mock


@pytest.fixture(scope="session")
def smtp_inbox() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.stop()
