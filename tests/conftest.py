"""The four services as real processes on the real broker, on PostgreSQL and on SQLite, and a
store in them, for the end-to-end and browser tests."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from postsale_local.processes import free_port
from postsale_local.stripe_test_mode import StripeTestMode
from postsale_local.suite import SERVICES, Store, Suite
from tests.support import STRIPE_WEBHOOK_SECRET

@pytest.fixture(scope="session")
def stripe_test_mode(stripe_mock) -> Iterator[StripeTestMode]:
    """stripe-mock with the outcomes of Stripe's test mode for intents (see `StripeTestMode`)."""
    with StripeTestMode(stripe_mock.api_base) as proxy:
        yield proxy


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def suite(request, kafka_bootstrap, smtp_inbox, stripe_test_mode, tmp_path_factory) -> Iterator[Suite]:
    """The suite on PostgreSQL or SQLite with the sandbox provider; a test that needs a store on
    Stripe (stripe-mock, on PostgreSQL) asks for `@pytest.mark.parametrize("suite", ["stripe"], indirect=True)`.
    Only one suite runs at a time: they share the broker's topics and consumer groups. The `scratch`
    suite (PostgreSQL) is for tests that change what other tests rely on, such as Schemathesis
    saving generated templates, themes and settings."""
    backend = request.param
    run = uuid.uuid4().hex[:8]
    provider = {"CHECKOUT_PAYMENT_PROVIDER": "stripe", "CHECKOUT_STRIPE_PUBLISHABLE_KEY": "pk_test_postsale"} \
        if backend == "stripe" else {}
    if backend in ("postgresql", "stripe", "scratch"):
        postgres = request.getfixturevalue("postgres")
        database_urls = {service: postgres.create_database(f"{service}_{run}") for service in SERVICES}
    else:
        folder = tmp_path_factory.mktemp(f"sqlite-{run}")
        database_urls = {service: f"sqlite:///{folder / f'{service}.db'}" for service in SERVICES}
    running = Suite(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_urls=database_urls,
        smtp_port=smtp_inbox.port,
        log_dir=tmp_path_factory.mktemp(f"logs-{backend}"),
        ports={service: free_port() for service in SERVICES},
        extra_env={
            "CHECKOUT_STRIPE_API_KEY": "sk_test_postsale",
            "CHECKOUT_STRIPE_API_BASE": stripe_test_mode.api_base,
            "CHECKOUT_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "ENTITLEMENTS_STORAGE_DIR": str(tmp_path_factory.mktemp(f"files-{backend}")),
            **provider,
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def store(suite: Suite) -> Store:
    name = f"Membership {uuid.uuid4().hex[:6]}"
    return suite.create_store(name, f"{name} offer")
