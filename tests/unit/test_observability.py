"""Request metrics on /metrics, JSON log lines from every logger, and gauges counted from a
database, in process. (Spans exported over OTLP: tests/integration/test_telemetry.py; a
service process's output: tests/integration/test_service_process.py.)"""

from __future__ import annotations

import io
import json
import logging
import uuid
import warnings

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import REGISTRY, Gauge
from sqlmodel import Field, Session, SQLModel

from postsale.runtime import tracing
from postsale.runtime.db import make_engine
from postsale.runtime.metrics import count_rows
from postsale.runtime.web import add_operational_routes, configure_logging

pytestmark = pytest.mark.unit


def requests_counted(**labels) -> float:
    return REGISTRY.get_sample_value("postsale_http_requests_total", labels) or 0.0


def app_with_routes() -> FastAPI:
    app = FastAPI()
    add_operational_routes(app)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict:
        return {"id": thing_id, "trace": tracing.current_trace_id()}

    @app.get("/broken")
    async def broken() -> dict:
        raise RuntimeError("boom")

    # A service's own middleware, added after the shared ones (as accounts refuses big forms):
    # what it answers by itself is counted too.
    @app.middleware("http")
    async def refuse(request: Request, call_next):
        if request.headers.get("x-refuse"):
            return PlainTextResponse("too large", status_code=413)
        return await call_next(request)

    return app


async def test_requests_are_counted_and_timed_by_route_template_and_status():
    app = app_with_routes()
    before = {
        "thing": requests_counted(method="GET", route="/things/{thing_id}", status="200"),
        "refused": requests_counted(method="GET", route="unmatched", status="413"),
        "missing": requests_counted(method="GET", route="unmatched", status="404"),
        "broken": requests_counted(method="GET", route="/broken", status="500"),
        "weird": requests_counted(method="OTHER", route="/things/{thing_id}", status="405"),
    }
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for n in range(3):
            answer = await client.get(f"/things/{uuid.uuid4().hex}")  # three paths, one route
            assert answer.json()["trace"] == answer.headers["x-trace-id"]
        assert (await client.get("/things/x", headers={"x-refuse": "1"})).status_code == 413
        assert (await client.get(f"/nothing/{uuid.uuid4().hex}")).status_code == 404
        assert (await client.get("/broken")).status_code == 500
        assert (await client.request("BREW", "/things/x")).status_code == 405  # no series per invented method
        exposed = (await client.get("/metrics/")).text
    assert requests_counted(method="GET", route="/things/{thing_id}", status="200") == before["thing"] + 3
    # answered before any route was matched: counted, under no route
    assert requests_counted(method="GET", route="unmatched", status="413") == before["refused"] + 1
    assert requests_counted(method="GET", route="unmatched", status="404") == before["missing"] + 1
    assert requests_counted(method="GET", route="/broken", status="500") == before["broken"] + 1
    assert requests_counted(method="OTHER", route="/things/{thing_id}", status="405") == before["weird"] + 1
    assert 'postsale_http_requests_total{method="GET",route="/things/{thing_id}",status="200"}' in exposed
    assert ('postsale_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/things/{thing_id}",'
            'status="200"}') in exposed
    for name in ("postsale_outbox_backlog", "postsale_outbox_oldest_unsent_age_seconds", "postsale_outbox_parked_rows",
                 "postsale_outbox_parked_total", "postsale_events_dead_lettered_total", "postsale_consumer_lag",
                 "postsale_emails_sent_total", "postsale_email_send_failures_total", "postsale_emails_failed_total",
                 "postsale_subscriptions"):
        assert f"# TYPE {name} " in exposed, name


class Thing(SQLModel, table=True):
    __tablename__ = "test_observed_things"
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    status: str


def test_a_gauge_counts_rows_per_value_and_goes_back_to_zero(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'observed.db'}")
    Thing.__table__.create(engine)
    gauge = Gauge(f"test_things_{uuid.uuid4().hex[:8]}", "things", ["kind", "status"])
    observe = count_rows(gauge, Thing, ("kind", "status"))
    value = lambda kind, status: gauge.labels(kind, status)._value.get()  # noqa: E731, SLF001
    with Session(engine) as session:
        session.add_all([Thing(kind="subscription", status="active"), Thing(kind="subscription", status="active"),
                         Thing(kind="subscription", status="past_due"), Thing(kind="payment_plan", status="active")])
        session.commit()
    observe(engine)
    assert (value("subscription", "active"), value("subscription", "past_due"), value("payment_plan", "active")) == (
        2, 1, 1)
    with Session(engine) as session:  # the one in dunning recovers
        session.get(Thing, 3).status = "active"
        session.commit()
    observe(engine)
    assert (value("subscription", "active"), value("subscription", "past_due")) == (3, 0)
    engine.dispose()


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_every_logger_writes_json_lines_even_one_that_brought_its_own_handler(monkeypatch, restored_logging):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    # As uvicorn configures its loggers before it calls the app factory: a plain-text handler of their own.
    own = logging.getLogger(f"uvicorn.test{uuid.uuid4().hex[:6]}")
    own.addHandler(logging.StreamHandler(out))
    own.propagate = False
    configure_logging("checkout")
    own.info("Application startup complete.")
    with tracing.continue_trace(f"00-{'a' * 32}-{'b' * 16}-01"):
        logging.getLogger("postsale.test").warning("with a trace")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("postsale.test").exception("failed")
    warnings.warn("careful", UserWarning, stacklevel=1)  # Python's warnings too
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is JSON
    assert [(line["logger"], line["message"].splitlines()[0]) for line in lines][:3] == [
        (own.name, "Application startup complete."), ("postsale.test", "with a trace"), ("postsale.test", "failed")]
    assert lines[1]["trace_id"] == "a" * 32 and lines[1]["service"] == "checkout"
    assert "ValueError: bad" in lines[2]["exception"]
    assert lines[3]["logger"] == "py.warnings" and "careful" in lines[3]["message"]
