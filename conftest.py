"""The real components every integration and end-to-end test shares, started once per run.

Kafka, PostgreSQL and stripe-mock come from `postsale_local`: containers where a Docker
engine answers, local processes otherwise, or what KAFKA_BOOTSTRAP_SERVERS and
POSTSALE_TEST_POSTGRES_URL name. A component that cannot start fails the tests that need it;
nothing is skipped.
"""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller

from postsale_local.kafka import external_bootstrap_servers, local_kafka
from postsale_local.postgres import postgres_server
from postsale_local.processes import free_port
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


class SmtpInbox:
    """A real SMTP server (aiosmtpd) keeping what it receives in memory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._received = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, _server, _session, envelope) -> str:
        with self._received:
            self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
            self._received.notify_all()
        return "250 OK"

    def with_key(self, key: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Postsale-Email-Key"] == key]

    def wait_for(self, predicate: Callable[[EmailMessage], bool], timeout: float = 30) -> EmailMessage:
        with self._received:
            found = self._received.wait_for(lambda: next((m for m in self.messages if predicate(m)), None), timeout)
        if found is None:
            raise AssertionError(f"no matching email within {timeout}s; received: {[m['Subject'] for m in self.messages]}")
        return found

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(scope="session")
def smtp_inbox() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.stop()
