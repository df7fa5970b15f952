"""What the delivery tests share: a migrated SQLite database, the clock in the test's hand, events in,
what the outbox published, and a third party's endpoint with the scheduler that calls it."""

from __future__ import annotations

import json
import socket
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import AsyncIterator

import httpx
from fastapi import FastAPI
from sqlmodel import Session, select

from postsale.contracts import (AccessPolicy, Money, PurchaseCompleted, PurchasedProduct, PurchaseRefunded, decode,
                                delivery_fields)
from postsale.contracts.base import Event
from postsale.entitlements import products
from postsale.entitlements.adapters.tables import DeliveryRun
from postsale.entitlements.config import MIGRATIONS_DIR, DeliverySettings
from postsale.entitlements.delivery.runner import DELIVERIES, run_delivery
from postsale.runtime.db import make_engine
from postsale.runtime.messaging import OutboxMessage
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler
from postsale.runtime.settings import PublicUrls

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
CUSTOMER, EMAIL = "cus_ann", "ann@example.com"
EUR = Money(amount=4900, currency="EUR")
ADMIN_TOKEN = "admin-token-for-tests-only"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def migrated_engine(url: str):
    engine = make_engine(url)
    migrate(engine, MIGRATIONS_DIR)
    return engine


def database_url(request, tmp_path, name: str) -> str:
    """For a fixture with params `sqlite` and `postgresql`: a SQLite file, or a database of its own
    on the run's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    return request.getfixturevalue("postgres").create_database(f"{name}_{uuid.uuid4().hex[:8]}")


def product(engine, name: str, delivery_type: str, **settings) -> str:
    with Session(engine) as session:
        made = products.create_product(session, name=name, delivery_type=delivery_type, settings=settings or None)
        session.commit()
        return made.id


def paid(product_ids: list[str] | str, *, purchase_id: str | None = None, delivery_type: str = "membership",
         customer_id: str = CUSTOMER, email: str = EMAIL, at: datetime = T0,
         policy: AccessPolicy = AccessPolicy()) -> PurchaseCompleted:
    ids = [product_ids] if isinstance(product_ids, str) else product_ids
    return PurchaseCompleted(
        purchase_id=purchase_id or f"pur_{uuid.uuid4().hex[:10]}", customer_id=customer_id, email=email,
        offer_id="offer_1", offer_name="Offer",
        products=[PurchasedProduct(product_id=p, name=f"Product {p}", **delivery_fields(delivery_type)) for p in ids],
        amount=EUR, provider="sandbox", provider_payment_id="sbx_1", completed_at=at, new_customer=False,
        access_policy=policy)


def refunded(purchase: PurchaseCompleted, at: datetime) -> PurchaseRefunded:
    return PurchaseRefunded(refund_id=f"re_{uuid.uuid4().hex[:8]}", purchase_id=purchase.purchase_id,
                            customer_id=purchase.customer_id, email=purchase.email, amount=EUR, total_refunded=EUR,
                            full=True, actor="seller", refunded_at=at)


def handle(engine, use_case, event, now: datetime) -> str:
    event_id = uuid.uuid4().hex
    with Session(engine) as session:
        use_case(session, event, event_id, now=now)
        session.commit()
    return event_id


def published(engine, kind: type[Event] | None = None) -> list[Event]:
    """Every event queued in the outbox, oldest first (only those of `kind` when given)."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    events = [decode([(k, v.encode()) for k, v in json.loads(r.headers).items()], r.value) for r in rows]
    return [e for e in events if kind is None or isinstance(e, kind)]


def admin_app(engine, *routers) -> FastAPI:
    """The given routers on `engine`, without Kafka: what the HTTP side does, on its own."""
    from postsale.runtime.auth import SessionVerifier
    from postsale.runtime.csrf import add_csrf_cookie
    from postsale.runtime.db import LoopReads

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.loop_reads.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.engine, app.state.admin_token, app.state.urls = engine, ADMIN_TOKEN, PublicUrls()
    app.state.loop_reads = LoopReads(engine)
    app.state.session_verifier = SessionVerifier("http://127.0.0.1:9/.well-known/jwks.json")
    for router in routers:
        app.include_router(router)
    add_csrf_cookie(app)
    return app


def form_token(client, page: str = "/library") -> str:
    """The CSRF token the forms of a customer page carry."""
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text).group(1)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Endpoint:
    """A third party's endpoint behind httpx's mock transport: answers from a script, keeps requests."""

    def __init__(self, *answers: int) -> None:
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.answers.pop(0) if self.answers else 200, text="ok")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def delivery_scheduler(engine, clock: Clock, http: httpx.Client | None = None) -> Scheduler:
    def run(session, row, now):
        run_delivery(session, row, now, settings=DeliverySettings(), urls=PublicUrls(), http=http)
    return Scheduler(engine, DELIVERIES, DeliveryRun, run, clock=clock)


def resolve_publicly(monkeypatch) -> None:
    """The third parties' names resolve to a public address, as on the internet (the tests have no
    DNS): each call is checked to go to a public address first (`postsale.runtime.targets`)."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])
