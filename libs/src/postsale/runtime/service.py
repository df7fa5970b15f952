"""One service process: FastAPI with its Kafka subscribers and outbox relay in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine

from postsale.contracts import topics as contract_topics
from postsale.runtime.auth import SessionVerifier
from postsale.runtime.db import make_engine
from postsale.runtime.errors import refuse_oversized_events
from postsale.runtime.messaging import OutboxRelay, Subscription, subscribe
from postsale.runtime.messaging.consumer import LagMonitor
from postsale.runtime.messaging.deadletters import dead_letter_topic
from postsale.runtime.messaging.outbox import observe_outbox
from postsale.runtime.migrations import migrate
from postsale.runtime.settings import KafkaSettings, PublicUrls
from postsale.runtime.web import OUTBOX_MAX_AGE_SECONDS, add_operational_routes, configure_logging

log = logging.getLogger(__name__)

BackgroundTask = Callable[[FastAPI], Awaitable[None]]
"""A loop the service runs beside its requests, given the app; it runs until cancelled."""


class OperationsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTSALE_")

    outbox_max_age_seconds: float = OUTBOX_MAX_AGE_SECONDS  # /readyz fails beyond this
    metrics_interval_seconds: float = 15.0  # how often the outbox and lag gauges are refreshed


async def observe_forever(engine: Engine, lag: LagMonitor, interval: float) -> None:
    """Refreshes the outbox and consumer-lag gauges every `interval` seconds until cancelled."""
    try:
        while True:
            try:
                await asyncio.to_thread(observe_outbox, engine)
                await lag.observe()
            except Exception as exc:  # noqa: BLE001 - a missed look is logged, the next one may work
                log.warning("refreshing the outbox and lag gauges failed: %r", exc)
                await lag.close()
            await asyncio.sleep(interval)
    finally:
        await lag.close()


def make_broker(bootstrap_servers: str, service: str) -> KafkaBroker:
    # Idempotent producer with acks from all in-sync replicas: a retried send never
    # duplicates or reorders a record within a partition.
    return KafkaBroker(
        bootstrap_servers,
        client_id=f"postsale-{service}",
        enable_idempotence=True,
        acks="all",
        logger=logging.getLogger(f"postsale.{service}.kafka"),
    )


async def ensure_topics(bootstrap_servers: str, service: str) -> None:
    """Create Postsale's topics (and this service's dead-letter topic) when missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=f"postsale-{service}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = min(3, brokers)
        wanted = [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=replication,
                topic_configs=t.kafka_configs(),
            )
            for t in contract_topics.ALL
            if t.name not in existing
        ]
        dead_letters = dead_letter_topic(service)
        if dead_letters not in existing:
            wanted.append(NewTopic(dead_letters, num_partitions=1, replication_factor=replication))
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                # One at a time: replicas starting together may race to create the same topic.
                await admin.create_topics([topic])
    finally:
        await admin.close()


def service_lifespan(
    *,
    service: str,
    engine: Engine,
    migrations_dir: Path,
    bootstrap_servers: str,
    subscriptions: Sequence[Subscription],
    background: Sequence[BackgroundTask] = (),
):
    """The lifespan of a service app: migrations, topics, subscribers, relay and background loops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine, migrations_dir)
        broker = make_broker(bootstrap_servers, service)
        for subscription in subscriptions:
            subscribe(broker, engine, subscription)
        await ensure_topics(bootstrap_servers, service)
        await broker.start()
        app.state.broker = broker
        relay = OutboxRelay(engine, bootstrap_servers, client_id=f"postsale-{service}-outbox")
        lag = LagMonitor(bootstrap_servers, {subscription.group_id for subscription in subscriptions})
        tasks = [asyncio.create_task(relay.run(), name=f"{service}-outbox-relay"),
                 asyncio.create_task(observe_forever(engine, lag, OperationsSettings().metrics_interval_seconds),
                                     name=f"{service}-metrics")]
        tasks += [asyncio.create_task(task(app), name=f"{service}-{task.__name__}") for task in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            engine.dispose()

    return lifespan


def create_service_app(
    *,
    service: str,
    database_url: str,
    admin_token: str,
    migrations_dir: Path,
    subscriptions: Sequence[Subscription],
    background: Sequence[BackgroundTask] = (),
) -> FastAPI:
    """A service's FastAPI app with what every service shares; the caller adds its routes and state."""
    configure_logging(service)
    engine = make_engine(database_url)
    urls = PublicUrls()
    app = FastAPI(
        title=f"Postsale {service}",
        lifespan=service_lifespan(service=service, engine=engine, migrations_dir=migrations_dir,
                                  bootstrap_servers=KafkaSettings().bootstrap_servers,
                                  subscriptions=subscriptions, background=background),
    )
    app.state.engine = engine
    app.state.urls = urls
    app.state.admin_token = admin_token
    app.state.session_verifier = SessionVerifier(f"{urls.accounts_url}/.well-known/jwks.json")
    refuse_oversized_events(app)
    add_operational_routes(app, outbox_max_age=OperationsSettings().outbox_max_age_seconds)
    return app
