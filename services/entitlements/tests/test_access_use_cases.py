"""The use cases on a real (SQLite) database with the clock in the test's hand: events in, what
the seller's access view, the library, the ledger and the outbox say out."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from postsale.contracts import (AccessGranted, AccessPolicy, AccessRestored, AccessRevoked, AccessSuspended,
                                DisputeOpened, DisputeWon, Money, PurchaseCompleted, PurchasedProduct, PurchaseRefunded,
                                SubscriptionCancelled, SubscriptionPaused, SubscriptionResumed, decode)
from postsale.entitlements import access_views, changes, grants, handlers, products
from postsale.entitlements.adapters.tables import AccessReview
from postsale.entitlements.config import MIGRATIONS_DIR
from postsale.runtime.db import make_engine
from postsale.runtime.messaging import OutboxMessage
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
CUSTOMER, EMAIL = "cus_ann", "ann@example.com"
EUR = Money(amount=4900, currency="EUR")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    migrate(engine, MIGRATIONS_DIR)
    with Session(engine) as session:
        products.create_product(session, name="Course", delivery_type="membership")
        session.commit()
    yield engine
    engine.dispose()


def paid(purchase_id: str, product: str = "course", *, policy: AccessPolicy = AccessPolicy(),
         subscription_id: str | None = None, at: datetime = T0) -> PurchaseCompleted:
    return PurchaseCompleted(
        purchase_id=purchase_id, customer_id=CUSTOMER, email=EMAIL, offer_id="offer_1", offer_name="Offer",
        products=[PurchasedProduct(product_id=product, name=product.title(), delivery_type="membership")],
        amount=EUR, provider="sandbox", provider_payment_id="sbx_1", completed_at=at, new_customer=False,
        access_policy=policy, subscription_id=subscription_id)


def billing(subscription_id: str, purchase_id: str) -> dict:
    return {"subscription_id": subscription_id, "billing": "subscription", "purchase_id": purchase_id,
            "customer_id": CUSTOMER, "email": EMAIL, "offer_id": "offer_1"}


def dispute(purchase_id: str) -> dict:
    return {"dispute_id": "dp_1", "purchase_id": purchase_id, "customer_id": CUSTOMER, "email": EMAIL,
            "amount": EUR, "provider": "sandbox"}


def handle(engine, use_case, event, now: datetime) -> str:
    event_id = uuid.uuid4().hex
    with Session(engine) as session:
        use_case(session, event, event_id, now=now)
        session.commit()
    return event_id


def access(engine, now: datetime) -> dict[str, access_views.ProductAccess]:
    with Session(engine) as session:
        return {p.product_id: p for p in access_views.customer_access(session, CUSTOMER, now)}


def ledger(engine) -> list[tuple[int, str, str, str, str | None]]:
    with Session(engine) as session:
        return [(e.seq, e.action, e.reason, e.actor, e.cause_event_type) for e in access_views.ledger(session, CUSTOMER)]


def published(engine) -> list[tuple[type, str]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.topic == "entitlements.access.v1")
                            .order_by(OutboxMessage.id)).all()
    events = [decode([(k, v.encode()) for k, v in json.loads(r.headers).items()], r.value) for r in rows]
    return [(type(e), e.reason) for e in events]


def test_refunding_one_of_two_purchases_of_a_product_keeps_access(engine):
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1"), T0)
    handle(engine, handlers.grant_access_for_purchase, paid("pur_2"), T0 + timedelta(minutes=1))
    refund = PurchaseRefunded(refund_id="re_1", purchase_id="pur_1", customer_id=CUSTOMER, email=EMAIL, amount=EUR,
                              total_refunded=EUR, full=True, actor="seller", refunded_at=T0 + timedelta(minutes=2))
    handle(engine, handlers.apply_refund, refund, T0 + timedelta(minutes=2))

    course = access(engine, T0 + timedelta(minutes=3))["course"]
    assert course.available
    assert [(g.purchase_id, g.status, g.reason) for g in course.grants] == [
        ("pur_1", "revoked", "full refund"), ("pur_2", "active", "purchase")]
    assert [g.purchase_id for g in course.active] == ["pur_2"]
    assert ledger(engine)[-1] == (3, "revoke", "full refund", "seller", "postsale.purchase.refunded")
    with Session(engine) as session:
        assert access_views.check_access(session, CUSTOMER, "course", T0 + timedelta(minutes=3)).purchase_id == "pur_2"


def test_a_refund_that_arrives_before_its_purchase_is_applied_when_the_purchase_comes(engine):
    # Same instant for both: the ledger's numbers still say the grant came first, then the revoke.
    refund = PurchaseRefunded(refund_id="re_1", purchase_id="pur_1", customer_id=CUSTOMER, email=EMAIL, amount=EUR,
                              total_refunded=EUR, full=True, actor="provider", refunded_at=T0)
    handle(engine, handlers.apply_refund, refund, T0)
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1"), T0)

    assert ledger(engine) == [(1, "grant", "purchase", "customer", "postsale.purchase.completed"),
                              (2, "revoke", "full refund", "provider", "postsale.purchase.refunded")]
    assert not access(engine, T0)["course"].available
    assert published(engine) == [(AccessGranted, "purchase"), (AccessRevoked, "full refund")]


def test_a_dispute_suspends_and_winning_it_restores_with_every_step_published(engine):
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1"), T0)
    handle(engine, handlers.apply_dispute, DisputeOpened(**dispute("pur_1"), opened_at=T0 + timedelta(hours=1)),
           T0 + timedelta(hours=1))
    on_hold = access(engine, T0 + timedelta(hours=2))["course"]
    assert (on_hold.available, on_hold.unavailable_because) == (False, "dispute opened")
    handle(engine, handlers.apply_dispute, DisputeWon(**dispute("pur_1"), closed_at=T0 + timedelta(days=9)),
           T0 + timedelta(days=9))

    assert access(engine, T0 + timedelta(days=9))["course"].available
    assert [entry[1:4] for entry in ledger(engine)] == [
        ("grant", "purchase", "customer"), ("suspend", "dispute opened", "provider"),
        ("restore", "dispute won", "provider")]
    assert published(engine) == [(AccessGranted, "purchase"), (AccessSuspended, "dispute opened"),
                                 (AccessRestored, "dispute won")]


def test_a_cancelled_subscription_revokes_when_its_billing_ends_run_by_the_scheduler(engine):
    clock = Clock(T0)
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1", subscription_id="sub_1"), T0)
    ends = T0 + timedelta(days=20)
    # The billing event names the subscription; its grants are those of the purchase that started it.
    cancelled = SubscriptionCancelled(**{**billing("sub_1", "pur_other"), "purchase_id": "pur_other"},
                                      effective_at=ends, actor="customer", cancelled_at=T0 + timedelta(days=1))
    cause = handle(engine, handlers.apply_billing_change, cancelled, T0 + timedelta(days=1))
    scheduler = Scheduler(engine, changes.REVIEWS, AccessReview, handlers.review_access, clock=clock)

    clock.now = ends - timedelta(seconds=1)
    assert scheduler.run_due() == 0
    course = access(engine, clock.now)["course"]
    assert (course.available, course.until) == (True, ends)

    clock.now = ends
    assert scheduler.run_due() == 1
    assert ledger(engine)[-1] == (2, "revoke", "subscription cancelled", "customer", "postsale.subscription.cancelled")
    with Session(engine) as session:
        assert access_views.ledger(session, CUSTOMER)[-1].cause_event_id == cause
    assert not access(engine, ends)["course"].available


def test_a_pause_on_a_suspend_policy_holds_access_until_the_billing_resumes(engine):
    handle(engine, handlers.grant_access_for_purchase,
           paid("pur_1", policy=AccessPolicy(on_pause="suspend"), subscription_id="sub_1"), T0)
    handle(engine, handlers.apply_billing_change,
           SubscriptionPaused(**billing("sub_1", "pur_1"), actor="customer", paused_at=T0 + timedelta(days=2)),
           T0 + timedelta(days=2))
    assert access(engine, T0 + timedelta(days=3))["course"].unavailable_because == "subscription paused"
    handle(engine, handlers.apply_billing_change,
           SubscriptionResumed(**billing("sub_1", "pur_1"), actor="customer", resumed_at=T0 + timedelta(days=5)),
           T0 + timedelta(days=5))
    assert access(engine, T0 + timedelta(days=5))["course"].available
    assert [e[1:3] for e in ledger(engine)] == [("grant", "purchase"), ("suspend", "subscription paused"),
                                                ("restore", "subscription resumed")]


def test_access_for_n_days_expires_when_the_scheduler_reaches_its_end(engine):
    clock = Clock(T0)
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1", policy=AccessPolicy(access_days=30)), T0)
    ends = T0 + timedelta(days=30)
    assert access(engine, T0)["course"].until == ends
    # Past its end the product is gone at once, even before the scheduler has recorded it.
    assert not access(engine, ends)["course"].available
    assert access(engine, ends)["course"].unavailable_because == "access period ended"

    scheduler = Scheduler(engine, changes.REVIEWS, AccessReview, handlers.review_access, clock=clock)
    clock.now = ends
    assert scheduler.run_due() == 1
    assert ledger(engine)[-1] == (2, "expire", "access period ended", "system", "postsale.purchase.completed")
    assert published(engine)[-1] == (AccessRevoked, "access period ended")


def test_the_seller_grants_and_revokes_by_hand_without_touching_the_purchase(engine):
    handle(engine, handlers.grant_access_for_purchase, paid("pur_1", product="ebook"), T0)
    with Session(engine) as session:
        course = session.exec(text("SELECT id FROM products")).scalar_one()
        grant = grants.grant_by_seller(session, customer_id=CUSTOMER, product_id=course, days=7,
                                         note="conference speaker", now=T0)
        session.commit()
        grant_id = grant.id
    assert access(engine, T0)[course].until == T0 + timedelta(days=7)
    with Session(engine) as session:
        grants.revoke_by_seller(session, customer_id=CUSTOMER, grant_id=grant_id, note="asked to", now=T0)
        grants.revoke_by_seller(session, customer_id=CUSTOMER, grant_id=grant_id, note="twice", now=T0)
        session.commit()
    assert access(engine, T0)[course].unavailable_because == "revoked by the seller"
    assert access(engine, T0)["ebook"].available
    with Session(engine) as session:
        entries = access_views.ledger(session, CUSTOMER)
    assert [(e.action, e.reason, e.actor, e.note) for e in entries[1:]] == [
        ("grant", "granted by the seller", "seller", "conference speaker"),
        ("revoke", "revoked by the seller", "seller", "asked to")]


def test_a_manual_grant_to_an_unknown_customer_needs_their_email(engine):
    with Session(engine) as session:
        course = session.exec(text("SELECT id FROM products")).scalar_one()
        with pytest.raises(grants.EmailNeeded):
            grants.grant_by_seller(session, customer_id="cus_new", product_id=course, now=T0)
        with pytest.raises(products.UnknownProduct):
            grants.grant_by_seller(session, customer_id="cus_new", product_id="prod_nope", email="x@example.com")
        grant = grants.grant_by_seller(session, customer_id="cus_new", product_id=course, email="new@example.com",
                                         now=T0)
        session.commit()
        assert (grant.status, access_views.customer_email(session, "cus_new")) == ("active", "new@example.com")


def test_existing_grants_become_current_access_when_the_database_is_migrated(tmp_path):
    from alembic import command
    from alembic.config import Config

    from postsale.runtime.migrations import migration_connection

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    with engine.begin() as connection:
        for n, (customer, purchase) in enumerate([("cus_a", "pur_1"), ("cus_a", "pur_2"), ("cus_b", "pur_3")]):
            connection.execute(text(
                "INSERT INTO access_ledger (id, customer_id, email, product_id, action, reason, actor, cause_event_id,"
                " purchase_id, created_at)"
                " VALUES (:id, :c, :e, 'course', 'grant', 'purchase', 'customer', :ev, :p, :at)"),
                {"id": f"grant_{n}", "c": customer, "e": f"{customer}@example.com", "ev": f"evt_{n}", "p": purchase,
                 "at": T0 + timedelta(minutes=n)})
    migrate(engine, MIGRATIONS_DIR)
    with Session(engine) as session:
        assert [(e.seq, e.purchase_id) for e in access_views.ledger(session, "cus_a")] == [(1, "pur_1"), (2, "pur_2")]
        assert [g.id for g in access_views.customer_access(session, "cus_a", T0)[0].active] == ["grant_0", "grant_1"]
        assert access_views.check_access(session, "cus_b", "course", T0).purchase_id == "pur_3"
    # The next change of that customer is numbered after the old entries.
    refund = PurchaseRefunded(refund_id="re", purchase_id="pur_1", customer_id="cus_a", email="cus_a@example.com",
                                  amount=EUR, total_refunded=EUR, full=True, actor="seller", refunded_at=T0)
    with Session(engine) as session:
        handlers.apply_refund(session, refund, "evt_refund", now=T0 + timedelta(hours=1))
        session.commit()
        assert [(e.seq, e.action) for e in access_views.ledger(session, "cus_a")][-1] == (3, "revoke")
        assert access_views.check_access(session, "cus_a", "course", T0 + timedelta(hours=1)).purchase_id == "pur_2"
    engine.dispose()
