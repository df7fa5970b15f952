"""Follow-up sequences and follow-up offers by rule, on the follow-ups' scheduler with a clock the
test moves: steps go out at their delays and stop when access ends; a rule fires for its case and
not for its counter-case, once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from postsale.contracts import (AccessGranted, AccessRevoked, CustomerActivity, Money, ProductCompleted,
                                PurchaseCompleted, PurchasedProduct, UpsellDeclined)
from postsale.notifications import followups, rules, sequences, suppressions, templates
from postsale.notifications.adapters.tables import FollowUp, TemplateOverride
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.rendering import Parts
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from postsale.runtime.scheduler import Scheduler
from notifications_support import Clock, deliver, deliver_batch, emails

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTSALE_CHECKOUT_URL", "https://shop.test")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    with Session(engine) as session:
        templates.save(session, "tip", Parts(subject="Tip {{ step }} for {{ offer_name }}",
                                             text="Hi {{ email }}: {{ offer_url }}", html="<p>{{ offer_url }}</p>"))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def follow_ups(engine, clock) -> Scheduler:
    return Scheduler(engine, followups.FOLLOW_UPS, FollowUp, followups.run_follow_up, clock=clock)


def bought(offer_id: str = "off_a", *, customer: str = "cus_1", at: datetime = T0) -> PurchaseCompleted:
    return PurchaseCompleted(purchase_id=f"pur_{customer}_{offer_id}_{at.timestamp()}", customer_id=customer,
                             email=f"{customer}@example.com", offer_id=offer_id, offer_name=f"Offer {offer_id}",
                             products=[PurchasedProduct(product_id=f"prd_{offer_id}", name="Course",
                                                        delivery_type="membership")],
                             amount=Money(amount=4900, currency="EUR"), provider="sandbox",
                             provider_payment_id="sbx", completed_at=at, new_customer=True)


def access(event_type, purchase: PurchaseCompleted, at: datetime):
    moment = {"granted_at": at} if event_type is AccessGranted else {"revoked_at": at}
    return event_type(entry_id=f"ent_{at.timestamp()}", customer_id=purchase.customer_id, email=purchase.email,
                      product_id=purchase.products[0].product_id, product_name="Course", delivery_type="membership",
                      reason="purchase", actor="system", purchase_id=purchase.purchase_id, **moment)


def sent(engine, prefix: str) -> list[str]:
    return sorted(k for k, e in emails(engine).items() if k.startswith(prefix) and e.status == "queued")


def test_a_sequence_sends_each_step_at_its_delay_and_stops_when_access_ends(engine, clock, follow_ups):
    with Session(engine) as session:
        sequence = sequences.create_sequence(session, offer_id="off_a", name="Onboarding", steps=[
            {"delay_hours": 1, "template": "tip"}, {"delay_hours": 48, "template": "tip"},
            {"delay_hours": 168, "template": "tip"}])
        session.commit()
        key = f"follow-up:{sequence.id}"
    purchase = bought()
    deliver(engine, purchase)
    deliver(engine, purchase)
    deliver(engine, bought("off_other"))  # another offer: no sequence
    deliver(engine, access(AccessGranted, purchase, T0))

    for hours, expected in ((1, 1), (47, 1), (48, 2)):
        clock.move_to(T0 + timedelta(hours=hours))
        follow_ups.run_due()
        assert len(sent(engine, key)) == expected, hours
    step = emails(engine)[f"{key}:{purchase.purchase_id}:2"]
    assert step.subject == "Tip 2 for Offer off_a" and step.marketing and step.unsubscribe_url
    assert "https://shop.test/offers/off_a" in step.text_body

    deliver(engine, access(AccessRevoked, purchase, T0 + timedelta(days=3)))  # a full refund
    clock.move_to(T0 + timedelta(days=8))
    assert follow_ups.run_due() == 1
    assert len(sent(engine, key)) == 2


def test_an_unsubscribed_customer_gets_no_step(engine, clock, follow_ups):
    with Session(engine) as session:
        sequences.create_sequence(session, offer_id="off_a", name="Onboarding", steps=[{"delay_hours": 1, "template": "tip"}])
        suppressions.suppress(session, "cus_1@example.com", suppressions.UNSUBSCRIBED)
        session.commit()
    deliver(engine, bought())
    clock.move_to(T0 + timedelta(hours=2))
    follow_ups.run_due()
    assert [e.status for e in emails(engine).values() if e.template == "tip"] == ["suppressed"]


def add_rule(engine, **fields) -> str:
    with Session(engine) as session:
        rule = rules.create_rule(session, template="tip", link_offer_id="off_up", **fields)
        session.commit()
        return rule.id


def test_each_purchase_of_a_batch_gets_its_follow_ups_planned(engine):
    rule = add_rule(engine, trigger="no_login", offer_id="off_a", days=3)
    with Session(engine) as session:
        sequence = sequences.create_sequence(session, offer_id="off_a", name="Onboarding",
                                             steps=[{"delay_hours": 1, "template": "tip"}]).id
        session.commit()
    purchases = [bought(customer="cus_1"), bought("off_b", customer="cus_2"), bought(customer="cus_3")]
    deliver_batch(engine, purchases)  # one transaction: the offer's rules and sequences read once
    with Session(engine) as session:
        planned = sorted(row.id for row in session.exec(select(FollowUp)).all())
    assert planned == sorted([f"follow-up-offer:{rule}:{purchases[0].purchase_id}",
                              f"follow-up-offer:{rule}:{purchases[2].purchase_id}",
                              f"follow-up:{sequence}:{purchases[0].purchase_id}:1",
                              f"follow-up:{sequence}:{purchases[2].purchase_id}:1"])


def test_bought_a_but_not_b_within_n_days_fires_and_not_when_b_was_bought(engine, clock, follow_ups):
    rule = add_rule(engine, trigger="bought_without", offer_id="off_a", other_offer_id="off_b", days=5)
    deliver(engine, bought(customer="cus_1"))
    deliver(engine, bought(customer="cus_2"))
    deliver(engine, bought("off_b", customer="cus_2", at=T0 + timedelta(days=2)))  # the counter-case
    clock.move_to(T0 + timedelta(days=5) - timedelta(minutes=1))
    assert follow_ups.run_due() == 0
    clock.move_to(T0 + timedelta(days=5))
    assert follow_ups.run_due() == 2
    assert sent(engine, f"follow-up-offer:{rule}") == [f"follow-up-offer:{rule}:pur_cus_1_off_a_{T0.timestamp()}"]
    email = emails(engine)[f"follow-up-offer:{rule}:pur_cus_1_off_a_{T0.timestamp()}"]
    assert "https://shop.test/offers/off_up" in email.text_body


def test_not_logged_in_after_buying_fires_and_not_after_a_login(engine, clock, follow_ups):
    rule = add_rule(engine, trigger="no_login", offer_id="off_a", days=3)
    deliver(engine, bought(customer="cus_1"))
    deliver(engine, bought(customer="cus_2"))
    deliver(engine, CustomerActivity(customer_id="cus_2", kind="login", occurred_at=T0 + timedelta(days=1)))
    deliver(engine, CustomerActivity(customer_id="cus_1", kind="library_visit", occurred_at=T0 + timedelta(days=1)))
    clock.move_to(T0 + timedelta(days=3))
    follow_ups.run_due()
    assert [k.split(":")[2] for k in sent(engine, f"follow-up-offer:{rule}")] == [f"pur_cus_1_off_a_{T0.timestamp()}"]


def test_a_declined_upsell_and_a_finished_product_fire_once_unless_the_offer_is_bought(engine, clock, follow_ups):
    declined_rule = add_rule(engine, trigger="upsell_declined", offer_id="off_u")
    finished_rule = add_rule(engine, trigger="product_completed", product_id="prd_a", days=1)
    for customer in ("cus_1", "cus_2"):
        event = UpsellDeclined(purchase_id=f"pur_{customer}", customer_id=customer, email=f"{customer}@example.com",
                               offer_id="off_u", offer_name="Upsell", declined_at=T0)
        deliver(engine, event)
        deliver(engine, event)
        deliver(engine, ProductCompleted(customer_id=customer, email=f"{customer}@example.com", product_id="prd_a",
                                         product_name="Course", lessons=5, completed_at=T0))
    deliver(engine, bought("off_up", customer="cus_2"))  # already has the offer the emails link to
    assert follow_ups.run_due() == 2
    clock.move_to(T0 + timedelta(days=1))
    assert follow_ups.run_due() == 2
    assert sent(engine, f"follow-up-offer:{declined_rule}") == [f"follow-up-offer:{declined_rule}:pur_cus_1:off_u"]
    assert sent(engine, f"follow-up-offer:{finished_rule}") == [f"follow-up-offer:{finished_rule}:cus_1:prd_a"]


def test_a_template_a_sequence_sends_cannot_be_deleted_and_a_missing_one_is_not_retried(engine, clock, follow_ups):
    with Session(engine) as session:
        sequence = sequences.create_sequence(session, offer_id="off_a", name="Onboarding",
                                             steps=[{"delay_hours": 1, "template": "tip"}])
        session.commit()
        key = f"follow-up:{sequence.id}"
        with pytest.raises(templates.TemplateInUse, match=f"sequence {sequence.id} still send tip"):
            templates.reset(session, "tip")
        # Gone all the same (removed straight from the database): no default to fall back on.
        session.delete(session.get(TemplateOverride, "tip"))
        session.commit()
    deliver(engine, bought())
    clock.move_to(T0 + timedelta(hours=2))
    assert follow_ups.run_due() == 1
    assert sent(engine, key) == []
    with Session(engine) as session:  # done, not left to be retried for hours
        [row] = session.exec(select(FollowUp)).all()
        assert row.done_at is not None and row.attempts == 0
