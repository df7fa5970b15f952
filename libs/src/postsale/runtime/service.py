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
from postsale.runtime import operations_pages, tracing
from postsale.runtime.accounts_feed import AccountsFeed, CurrentTheme
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.auth import RevokedSessions, SessionVerifier
from postsale.runtime.csrf import add_csrf_cookie
from postsale.runtime.db import LoopReads, make_engine
from postsale.runtime.errors import backoffice_errors, refuse_oversized_events
from postsale.runtime.messaging import OutboxRelay, Subscription, subscribe
from postsale.runtime.messaging.consumer import LagMonitor
from postsale.runtime.messaging.deadletters import dead_letter_topic
from postsale.runtime.messaging.outbox import observe_outbox
from postsale.runtime.metrics import Observer
from postsale.runtime.migrations import migrate
from postsale.runtime.security import DEFAULT_POLICY, add_security_headers
from postsale.runtime.settings import KafkaSettings, PublicUrls, kafka_settings
from postsale.runtime.web import OUTBOX_MAX_AGE_SECONDS, RefuseNul, add_operational_routes, configure_logging

log = logging.getLogger(__name__)

BackgroundTask = Callable[[FastAPI], Awaitable[None]]
"""A loop the service runs beside its requests, given the app; it runs until cancelled."""


class OperationsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTSALE_")

    outbox_max_age_seconds: float = OUTBOX_MAX_AGE_SECONDS  # /readyz fails beyond this
    metrics_interval_seconds: float = 15.0  # how often the outbox and lag gauges are refreshed
    # How long start-up waits for the accounts feed (ended sessions, the theme) to catch up.
    accounts_feed_start_seconds: float = 20.0


async def observe_forever(engine: Engine, lag: LagMonitor, interval: float,
                          observers: Sequence[Observer] = ()) -> None:
    """Refreshes the outbox and consumer-lag gauges, and the service's own (`observers`), every
    `interval` seconds until cancelled."""
    try:
        while True:
            try:
                await asyncio.to_thread(observe_outbox, engine)
                await lag.observe()
            except Exception as exc:  # noqa: BLE001 - a missed look is logged, the next one may work
                log.warning("refreshing the outbox and lag gauges failed: %r", exc)
                await lag.close()
            for observer in observers:
                try:
                    await asyncio.to_thread(observer, engine)
                except Exception as exc:  # noqa: BLE001 - as above
                    log.warning("refreshing the gauges of %s failed: %r", getattr(observer, "__qualname__", observer),
                                exc)
            await asyncio.sleep(interval)
    finally:
        await lag.close()


def make_broker(kafka: KafkaSettings | str | None, service: str) -> KafkaBroker:
    """The service's faststream broker, connected and secured as `kafka` says (bootstrap servers
    alone: the rest from the environment). Subscribe with `subscribe(..., kafka=...)` and the
    same settings, which name the topics and groups on the cluster."""
    kafka = kafka_settings(kafka)
    # Idempotent producer with acks from all in-sync replicas: a retried send never
    # duplicates or reorders a record within a partition.
    return KafkaBroker(
        # A list: faststream takes a comma-separated string for one host.
        [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()],
        security=kafka.faststream_security(),
        client_id=f"postsale-{service}",
        enable_idempotence=True,
        acks="all",
        # faststream creates a subscriber's missing topic itself unless told not to; ours are
        # created by `ensure_topics`, with their configuration, or by the platform team.
        allow_auto_create_topics=kafka.create_topics,
        logger=logging.getLogger(f"postsale.{service}.kafka"),
        # faststream's "Received" and "Processed" lines for every batch, at DEBUG: at INFO they were
        # two JSON lines a batch in every service (a few percent of its CPU under load), saying
        # less than the record's span and the consumed counter. Failures are still logged as errors.
        log_level=logging.DEBUG,
    )


async def ensure_topics(kafka: KafkaSettings | str | None, service: str) -> None:
    """Create Postsale's topics (and this service's dead-letter topic) when missing, named with
    the installation's prefix, with `POSTSALE_KAFKA_PARTITIONS` partitions (default: the
    contract's); with `POSTSALE_KAFKA_CREATE_TOPICS` false, only say which are missing. Either way,
    name the topics that have fewer partitions than that (see `_too_few_partitions`)."""
    kafka = kafka_settings(kafka)
    # What each topic should be (a dead-letter topic: one partition), made only if missing.
    specs = [NewTopic(kafka.topic(t.name), num_partitions=kafka.partitions or t.partitions, replication_factor=1,
                      topic_configs=t.kafka_configs()) for t in contract_topics.ALL]
    specs.append(NewTopic(kafka.topic(dead_letter_topic(service)), num_partitions=1, replication_factor=1))
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id=f"postsale-{service}-admin")
    try:
        await admin.start()
        # One metadata request: every topic of the cluster with its partitions.
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        absent = [spec for spec in specs if spec.name not in existing]
        if kafka.create_topics and absent:
            replication = min(3, len((await admin.describe_cluster())["brokers"]))
            for spec in absent:
                spec.replication_factor = replication
                with contextlib.suppress(TopicAlreadyExistsError):
                    # One at a time: replicas starting together may race to create the same topic.
                    await admin.create_topics([spec])
    except Exception as exc:
        if kafka.create_topics:
            raise
        # Only a report: the clients say what fails.
        log.warning("topic creation is off (POSTSALE_KAFKA_CREATE_TOPICS=false); listing the topics failed: %r", exc)
        return
    finally:
        await admin.close()
    _too_few_partitions(kafka, specs, existing)
    if not kafka.create_topics:
        if absent:
            log.error("topic creation is off (POSTSALE_KAFKA_CREATE_TOPICS=false) and these topics are missing: %s",
                      ", ".join(sorted(spec.name for spec in absent)))
        else:
            log.info("topic creation is off (POSTSALE_KAFKA_CREATE_TOPICS=false); every topic exists")


def _too_few_partitions(kafka: KafkaSettings, specs: list[NewTopic], existing: dict[str, int]) -> None:
    """Warns of each existing topic with fewer partitions than its spec: its consumer groups use at
    most that many of a service's replicas. Never raised here: the records on a topic keep their
    partitions, so raised while a key's events wait unread, that key's next events could be read
    before them. The operator raises it once the topic's consumers have caught up."""
    for spec in sorted(specs, key=lambda spec: spec.name):
        name, partitions = spec.name, spec.num_partitions
        have = existing.get(name, partitions)
        if have >= partitions:
            continue
        log.warning("topic %s has %d partitions, fewer than the %d asked for%s: a consumer group reads it with at "
                    "most %d replicas of a service. Once its consumers have caught up (lag 0), raise it: "
                    "kafka-topics.sh --alter --topic %s --partitions %d", name, have, partitions,
                    " (POSTSALE_KAFKA_PARTITIONS)" if kafka.partitions else "", have, name, partitions)


def service_lifespan(
    *,
    service: str,
    engine: Engine,
    migrations_dir: Path,
    kafka: KafkaSettings | str | None,
    subscriptions: Sequence[Subscription],
    background: Sequence[BackgroundTask] = (),
    observers: Sequence[Observer] = (),
):
    """The lifespan of a service app: migrations, topics, subscribers, relay and background loops.

    Every Kafka client takes `kafka` (connection, security, the installation's prefix)."""
    kafka = kafka_settings(kafka)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine, migrations_dir)
        broker = make_broker(kafka, service)
        subscribe(broker, engine, subscriptions, kafka)
        await ensure_topics(kafka, service)
        await broker.start()
        app.state.broker = broker
        feed = AccountsFeed(kafka, revoked=app.state.revoked_sessions, theme=app.state.theme,
                            client_id=f"postsale-{service}-accounts-feed")
        feed_task = asyncio.create_task(feed.run(), name=f"{service}-accounts-feed")
        try:
            # Serve only once every session ended so far is known, so none is honoured by mistake.
            await asyncio.wait_for(feed.caught_up.wait(), OperationsSettings().accounts_feed_start_seconds)
        except asyncio.TimeoutError:
            log.warning("the accounts feed has not caught up yet; serving, and following it")
        relay = OutboxRelay(engine, kafka, client_id=f"postsale-{service}-outbox")
        lag = LagMonitor(kafka, {kafka.group(subscription.group_id) for subscription in subscriptions})
        tasks = [asyncio.create_task(relay.run(), name=f"{service}-outbox-relay"),
                 asyncio.create_task(observe_forever(engine, lag, OperationsSettings().metrics_interval_seconds,
                                                     observers), name=f"{service}-metrics")]
        tasks += [feed_task]
        tasks += [asyncio.create_task(task(app), name=f"{service}-{task.__name__}") for task in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            engine.dispose()
            await app.state.loop_reads.dispose()
            await asyncio.to_thread(tracing.flush)

    return lifespan


def create_service_app(
    *,
    service: str,
    database_url: str,
    admin_token: str,
    migrations_dir: Path,
    subscriptions: Sequence[Subscription],
    background: Sequence[BackgroundTask] = (),
    content_security_policy: str = DEFAULT_POLICY,
    observers: Sequence[Observer] = (),
) -> FastAPI:
    """A service's FastAPI app with what every service shares; the caller adds its routes and state.

    Shared: sessions verified against accounts' keys and refused once ended (`current_customer`),
    the seller's theme on every page that extends `base.html`, security headers on every response,
    and the CSRF cookie behind `csrf_field` / `require_csrf`.

    `observers` set the service's own gauges from its database every
    `POSTSALE_METRICS_INTERVAL_SECONDS`. Kafka, the database pool, tracing and logging are
    configured from the environment (README, Configuration)."""
    configure_logging(service)
    tracing.configure_tracing(service)
    kafka = KafkaSettings()  # a bad Kafka setting stops the service here, before anything starts
    engine = make_engine(database_url)
    urls = PublicUrls()
    app = FastAPI(
        title=f"Postsale {service}",
        lifespan=service_lifespan(service=service, engine=engine, migrations_dir=migrations_dir, kafka=kafka,
                                  subscriptions=subscriptions, background=background, observers=observers),
    )
    app.state.engine = engine
    app.state.loop_reads = LoopReads(engine)  # for handlers in the event loop: see `/api/library`
    app.state.kafka = kafka  # for the pages that read Kafka during a request (operations_pages)
    app.state.urls = urls
    app.state.admin_token = admin_token
    app.state.service = service
    app.state.activity_throttle = ActivityThrottle()
    app.state.revoked_sessions = RevokedSessions()
    app.state.theme = CurrentTheme()
    app.state.session_verifier = SessionVerifier(f"{urls.accounts_url}/.well-known/jwks.json",
                                                 revoked=app.state.revoked_sessions)
    backoffice_errors(app)
    refuse_oversized_events(app)
    add_operational_routes(app, outbox_max_age=OperationsSettings().outbox_max_age_seconds)
    add_csrf_cookie(app)
    add_security_headers(app, content_security_policy)
    app.add_middleware(RefuseNul)
    # The back office's operations page, of every service.
    app.include_router(operations_pages.pages, prefix=operations_pages.operations_path(service))
    return app
