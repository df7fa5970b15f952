"""The fault tests run suites of their own (four services, their databases, an SMTP server and
Kafka topics), because they kill things; the session's shared suite is never touched.

Kafka and PostgreSQL are the session's (tests/conftest.py) where the fault leaves them alone:
a run's topics and consumer groups carry a prefix of its own (`POSTSALE_KAFKA_PREFIX`) and its
databases a suffix. A test that kills the broker or the database server starts one of its own.
The faults that leave the broker and the database up share one run per module (`faulty`): each
leaves it whole again, and the invariant is checked over all of the run's purchases.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from postsale.runtime.settings import KafkaSettings
from postsale_local.processes import free_port
from postsale_local.smtp import SmtpInbox
from postsale_local.suite import SERVICES, Suite
from tests.faults.invariant import Report, assert_invariant
from tests.faults.load import Ledger, Load, Offers, create_offers


@dataclass
class FaultRun:
    suite: Suite
    smtp: SmtpInbox
    kafka: KafkaSettings  # the run's connection and prefix, as its services use them
    offers: Offers
    ledger: Ledger = field(default_factory=Ledger)

    def load(self, **options) -> Load:
        return Load(self.suite, self.offers, self.ledger, **options)

    def assert_invariant(self, name: str, load: Load, timeout: float = 150) -> Report:
        subscriptions = sum(1 for offer in load.paid.values() if offer == self.offers.subscription)
        print(f"\n[fault] {name}: {len(load.paid)} purchases ({subscriptions} subscriptions) and "
              f"{len(load.refunded)} refunds during the fault; {load.retries} buyer requests retried; "
              f"the run so far: {len(self.ledger.paid)} purchases")
        return assert_invariant(name, self.suite, self.smtp, self.kafka, self.ledger, timeout=timeout)


@contextmanager
def fault_run(kafka_bootstrap: str, postgres, folder: Path) -> Iterator[FaultRun]:
    """The four services on `postgres` (databases of their own) and `kafka_bootstrap` (a prefix
    of their own), with an SMTP server of their own and an offer of each kind to buy."""
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, prefix=f"fault-{run}")
    smtp = SmtpInbox()
    smtp.start()
    suite = Suite(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_urls={service: postgres.create_database(f"{service}_fault_{run}") for service in SERVICES},
        smtp_port=smtp.port,
        log_dir=folder / "logs",
        ports={service: free_port() for service in SERVICES},
        extra_env={"POSTSALE_KAFKA_PREFIX": kafka.prefix, "ENTITLEMENTS_STORAGE_DIR": str(folder / "files")},
    )
    try:
        suite.start()
        yield FaultRun(suite, smtp, kafka, create_offers(suite))
    finally:
        suite.stop()
        smtp.stop()


@pytest.fixture(scope="module")
def shared_run(kafka_bootstrap, postgres, tmp_path_factory) -> Iterator[FaultRun]:
    with fault_run(kafka_bootstrap, postgres, tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture
def faulty(shared_run: FaultRun) -> Iterator[FaultRun]:
    """The module's run on the session's broker and database server, for faults that leave
    both up; whole (every service and the SMTP server up) before and after each test."""
    yield shared_run
    for service in SERVICES:
        process = shared_run.suite.processes.get(service)
        assert process is not None and process.poll() is None, f"the test left {service} down"
