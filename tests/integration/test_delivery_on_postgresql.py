"""Delivery on PostgreSQL, where replicas race: a failing strategy's writes are undone while its failure
and the grant stay; two downloads racing for the last one of a limit get one; two activations racing
for the last seat of a key get one."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from postsale.contracts import AccessPolicy, Money, PurchaseCompleted, PurchasedProduct, delivery_fields
from postsale.entitlements import handlers, products
from postsale.entitlements.adapters.tables import Delivery, Grant, LicenseKey
from postsale.entitlements.config import MIGRATIONS_DIR
from postsale.entitlements.delivery import STRATEGIES, download, license_key
from postsale.entitlements.delivery.base import BaseStrategy
from postsale.runtime.clock import utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(postgres):
    engine = make_engine(postgres.create_database(f"entitlements_delivery_{uuid.uuid4().hex[:8]}"))
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def buy(engine, delivery_type: str, **settings) -> tuple[str, str]:
    """A product of `delivery_type` bought by a customer; returns the product and the grant."""
    with Session(engine) as session:
        product = products.create_product(session, name="Thing", delivery_type=delivery_type, settings=settings)
        session.commit()
        product_id = product.id
    if delivery_type == "download":
        with Session(engine) as session:
            download.add_file(session, file_id="file_1", product_id=product_id, name="a.pdf",
                              content_type="application/pdf", size=1, sha256="0" * 64, now=utcnow())
            session.commit()
    event = PurchaseCompleted(
        purchase_id=f"pur_{uuid.uuid4().hex[:8]}", customer_id="cus_1", email="ann@example.com", offer_id="o",
        offer_name="O", products=[PurchasedProduct(product_id=product_id, name="Thing", **delivery_fields(delivery_type))],
        amount=Money(amount=100, currency="EUR"), provider="sandbox", provider_payment_id="p", completed_at=utcnow(),
        new_customer=False, access_policy=AccessPolicy())
    with Session(engine) as session:
        [grant] = handlers.grant_access_for_purchase(session, event, uuid.uuid4().hex)
        session.commit()
        return product_id, grant.id


def race(*calls) -> list[object]:
    """Runs the calls at once, each in a thread; their results (or exceptions)."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(n, call):
        start.wait()
        try:
            results[n] = call()
        except Exception as exc:  # noqa: BLE001 - the result of the race
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class WritesThenFails(BaseStrategy):
    delivery_type = "membership"

    def grant(self, ctx, delivery):
        ctx.session.add(Grant(id=f"grant_{delivery.id}", customer_id="x", product_id="x", product_name="x",
                              delivery_type="x", source="seller", status="active", reason="x", granted_at=ctx.now,
                              changed_at=ctx.now, last_seq=0))
        ctx.session.flush()
        raise RuntimeError("the strategy broke after writing")

    def revoke(self, ctx, delivery):
        raise NotImplementedError


def test_a_failing_strategy_is_undone_but_its_failure_and_the_grant_stay(engine, monkeypatch):
    monkeypatch.setitem(STRATEGIES, "membership", WritesThenFails())
    product_id, grant_id = buy(engine, "membership")
    with Session(engine) as session:
        assert session.get(Grant, grant_id).status == "active"
        [delivery] = session.exec(select(Delivery).where(Delivery.product_id == product_id)).all()
        assert (delivery.status, delivery.detail) == ("retrying", "RuntimeError: the strategy broke after writing")
        assert session.get(Grant, f"grant_{delivery.id}") is None


def test_two_downloads_racing_for_the_last_one_get_one(engine):
    _, grant_id = buy(engine, "download", download_limit=1)
    with Session(engine) as session:
        grant = session.get(Grant, grant_id)
        file = download.live_files(session, grant.product_id)[0]
        tokens = [download.issue_link(session, grant, file, purpose="library", now=utcnow(),
                                      lifetime=timedelta(minutes=5))[0] for _ in range(2)]
        session.commit()

    def fetch(token: str):
        with Session(engine) as session:
            opened = download.open_link(session, token, now=utcnow())
            threading.Event().wait(0.2)  # slow enough for the other to try meanwhile
            session.commit()
            return opened

    results = race(*(lambda t=t: fetch(t) for t in tokens))
    assert sorted(type(r).__name__ for r in results) == ["LimitReached", "Opened"]


def test_two_activations_racing_for_the_last_seat_get_one(engine):
    _, grant_id = buy(engine, "license_key", activation_limit=1)
    with Session(engine) as session:
        key = session.exec(select(LicenseKey).where(LicenseKey.grant_id == grant_id)).one().key

    def activate(label: str):
        with Session(engine) as session:
            made = license_key.activate(session, key, label, utcnow())
            threading.Event().wait(0.2)
            session.commit()
            return made

    results = race(lambda: activate("laptop"), lambda: activate("desktop"))
    refused = [r for r in results if isinstance(r, license_key.LicenseRefused)]
    assert len(refused) == 1 and refused[0].code == "activation_limit_reached"
