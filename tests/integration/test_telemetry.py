"""Traces on the real broker, exported over OTLP to a receiver in the test: a request to a service
app (made by `create_service_app`, as every service's is) is a span; its trace id goes into the
`ce_traceparent` of the event it queues, and on through the outbox relay's send and the
consumer's handling on the other side of Kafka, each a span of the same trace."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from sqlmodel import Session, select

from postsale.contracts import ProductPublished, topics
from postsale.runtime import tracing
from postsale.runtime.db import SessionDep, create_tables
from postsale.runtime.messaging import OutboxMessage, OutboxRelay, Subscription, publish_later, subscribe
from postsale.runtime.service import create_service_app, ensure_topics, make_broker
from postsale.runtime.settings import KafkaSettings
from tests.integration.test_consumer_runtime import until
from tests.otlp import OtlpReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(monkeypatch):
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield running
        # Later tests' spans go nowhere, not to a receiver that is gone.
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.configure_tracing("tests")


def service_app(service: str, tmp_path):
    app = create_service_app(service=service, database_url=f"sqlite:///{tmp_path / f'{service}.db'}",
                             admin_token="t" * 24, migrations_dir=tmp_path, subscriptions=[])
    create_tables(app.state.engine)

    @app.post("/test/products/{name}", status_code=201)
    def publish_product(name: str, session: SessionDep) -> dict:
        event = ProductPublished(product_id=f"prod_{name}", name=name, delivery_type="membership",
                                 published_at=datetime.now(timezone.utc))
        event_id = publish_later(session, event, source="/tests")
        session.commit()
        return {"event_id": event_id}

    return app


async def test_a_request_s_trace_goes_through_the_outbox_and_kafka_into_the_consumer(receiver, kafka_bootstrap,
                                                                                     tmp_path):
    service = f"traced{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, prefix=f"t{uuid.uuid4().hex[:8]}")
    app = service_app(service, tmp_path)
    engine = app.state.engine
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        answer = await client.post("/test/products/traced", headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["x-trace-id"] == trace_id
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.event_id == answer.json()["event_id"])).one()
    version, event_trace, create_span, flags = json.loads(row.headers)[tracing.EVENT_HEADER].split("-")
    assert (version, event_trace, flags) == ("00", trace_id, "01")  # the request's trace, sampled

    handled: list[tuple[str | None, str]] = []
    subscription = Subscription(service, topics.PRODUCTS.name, {
        ProductPublished: lambda _session, event, _id: handled.append((tracing.current_trace_id(), event.product_id))})
    await ensure_topics(kafka, service)
    broker = make_broker(kafka, service)
    subscribe(broker, engine, subscription, kafka)
    await broker.start()
    try:
        assert await OutboxRelay(engine, kafka).publish_pending() == 1
        await until(lambda: _async(handled))
    finally:
        await broker.stop()
    assert handled == [(trace_id, "prod_traced")]  # the handler ran in the request's trace

    topic = kafka.topic(topics.PRODUCTS.name)
    expected = {"server", "db-in-request", "create", "send", "process", "db-in-consumer"}

    def found(spans) -> dict:
        ours = [s for s in spans if s.trace_id == trace_id]
        by_id = {s.span_id: s for s in ours}
        out = {}
        for s in ours:
            parent = by_id.get(s.parent_span_id)
            if s.kind == "server":
                out["server"] = s
            elif s.name == "db transaction" and parent is not None:
                out["db-in-request" if parent.kind == "server" else "db-in-consumer"] = s
            elif s.name == f"{topics.PRODUCTS.name} create":
                out["create"] = s
            elif s.name == f"{topic} send":
                out["send"] = s
            elif s.name == f"{topic} process":
                out["process"] = s
        return out

    tracing.flush()
    spans = found(receiver.wait_for(lambda received: found(received).keys() >= expected))
    server, create, send, process = spans["server"], spans["create"], spans["send"], spans["process"]
    assert server.service == f"postsale-{service}"
    assert (server.name, server.parent_span_id) == ("POST /test/products/{name}", caller_span)
    assert server.attributes["http.route"] == "/test/products/{name}"
    assert server.attributes["http.response.status_code"] == 201
    assert spans["db-in-request"].kind == "client"
    assert spans["db-in-request"].attributes["db.transaction.outcome"] == "commit"
    # The event's own span is the one its ce_traceparent names; the send and the handling continue it.
    assert (create.kind, create.span_id, create.parent_span_id) == ("producer", create_span, server.span_id)
    assert (send.kind, send.parent_span_id) == ("producer", create_span)
    assert send.attributes["messaging.message.id"] == row.event_id
    assert (process.kind, process.parent_span_id) == ("consumer", create_span)
    assert process.attributes["messaging.consumer.group.name"] == kafka.group(f"postsale-{service}")
    assert process.attributes["postsale.outcome"] == "handled"
    assert spans["db-in-consumer"].parent_span_id == process.span_id


async def test_a_request_without_a_traceparent_starts_a_trace_and_probes_export_no_span(receiver, tmp_path):
    app = service_app(f"traced{uuid.uuid4().hex[:8]}", tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        probe = await client.get("/healthz")
        missing = await client.get("/no/such/page")
    assert len(probe.headers["x-trace-id"]) == 32 and len(missing.headers["x-trace-id"]) == 32
    tracing.flush()
    spans = receiver.wait_for(lambda received: any(s.trace_id == missing.headers["x-trace-id"] for s in received))
    [page] = [s for s in spans if s.trace_id == missing.headers["x-trace-id"]]
    assert (page.name, page.kind, page.parent_span_id) == ("GET unmatched", "server", "")
    assert page.attributes["http.response.status_code"] == 404
    assert not [s for s in spans if s.trace_id == probe.headers["x-trace-id"]]


async def _async(value):
    return value
