"""The outbox's edges without a broker: the size limit of `publish_later`, which broker errors
park a row, and the readings and releases the operator and the gauges rely on (SQLite)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from aiokafka import errors
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from postsale.contracts import AccountActivated, ProductPublished
from postsale.runtime.clock import utcnow
from postsale.runtime.db import create_tables, make_engine
from postsale.runtime.errors import refuse_oversized_events
from postsale.runtime.messaging import MAX_EVENT_BYTES, EventTooLarge, OutboxMessage, publish_later
from postsale.runtime.messaging.outbox import is_unfixable, observe_outbox, parked_messages, release_parked

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    create_tables(engine)
    yield engine
    engine.dispose()


def product(name: str) -> ProductPublished:
    return ProductPublished(product_id="prod_1", name=name, delivery_type="none", published_at=utcnow())


def outbox(engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())


def test_an_event_over_the_limit_is_refused_and_nothing_is_queued(engine):
    with Session(engine) as session:
        with pytest.raises(EventTooLarge) as refused:
            publish_later(session, product("n" * 900_000), source="/tests")
        session.commit()
    assert outbox(engine) == []
    assert refused.value.event_type == "postsale.product.published"
    assert refused.value.size > MAX_EVENT_BYTES == refused.value.limit
    assert isinstance(refused.value, ValueError)  # a bad input, for the request handlers' 4xx


def test_the_limit_counts_the_whole_record_and_an_event_under_it_is_queued(engine):
    with Session(engine) as session:
        publish_later(session, product("n" * (MAX_EVENT_BYTES - 2_000)), source="/tests")
        session.commit()
    [row] = outbox(engine)
    size = len(row.key.encode()) + len(row.value) + sum(len(k) + len(v) for k, v in json.loads(row.headers).items())
    assert MAX_EVENT_BYTES - 2_000 < size <= MAX_EVENT_BYTES


def test_the_issue_s_two_900_kb_names_are_refused(engine):
    event = AccountActivated.model_construct(customer_id="cus_1", email="a@example.com",
                                             first_name="f" * 900_000, last_name="l" * 900_000,
                                             activated_at=utcnow())
    with Session(engine) as session, pytest.raises(EventTooLarge):
        publish_later(session, event, source="/tests")


@pytest.mark.parametrize("error", [
    errors.MessageSizeTooLargeError(), errors.RecordTooLargeError(), errors.RecordListTooLargeError(),
    errors.InvalidTopicError(), errors.TopicAuthorizationFailedError(), errors.PolicyViolationError(),
])
def test_a_refusal_retrying_cannot_fix_parks_the_row(error):
    assert is_unfixable(error)


@pytest.mark.parametrize("error", [
    errors.KafkaTimeoutError(), errors.KafkaConnectionError(), errors.NotLeaderForPartitionError(),
    errors.NotEnoughReplicasError(), errors.UnknownTopicOrPartitionError(), errors.RequestTimedOutError(),
    errors.OutOfOrderSequenceNumber(), errors.ProducerClosed(), errors.BrokerNotAvailableError(),
    RuntimeError("not from the broker"),
])
def test_a_passing_failure_or_one_of_the_producer_is_retried(error):
    assert not is_unfixable(error)


def test_the_readings_count_waiting_and_parked_rows_apart_and_release_requeues(engine):
    with Session(engine) as session:
        for name in ("a", "b", "c"):
            publish_later(session, product(name), source="/tests")
        session.commit()
    first, second, third = outbox(engine)
    with Session(engine) as session:
        session.get(OutboxMessage, first.id).sent_at = utcnow()
        session.get(OutboxMessage, second.id).parked_at = utcnow()
        session.commit()

    health = observe_outbox(engine, now=third.created_at.replace(tzinfo=utcnow().tzinfo) + timedelta(seconds=90))
    assert (health.backlog, round(health.oldest_age), health.parked) == (1, 90, 1)
    assert [row.id for row in parked_messages(engine)] == [second.id]

    assert release_parked(engine, [third.id]) == []  # not parked: nothing to release
    assert release_parked(engine) == [second.id]
    assert parked_messages(engine) == []
    assert observe_outbox(engine).backlog == 2


def test_a_request_that_would_queue_an_oversized_event_gets_a_413_and_stores_nothing(engine):
    app = FastAPI()
    refuse_oversized_events(app)

    @app.post("/names")
    def rename() -> dict:
        with Session(engine) as session:
            publish_later(session, product("x" * (MAX_EVENT_BYTES + 1)), source="/test")
            session.commit()
        return {}

    answer = TestClient(app).post("/names")
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]
    with Session(engine) as session:
        assert session.exec(select(OutboxMessage)).all() == []
