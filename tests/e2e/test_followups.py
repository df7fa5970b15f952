"""Follow-ups on the real broker, services and SMTP, time moved by the follow-ups' simulator (each
follow-up runs at its own due time): a three-step sequence sent on time and stopped by a refund;
a follow-up offer fired by its rule and not by the rule's counter-case."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from postsale.contracts import Money, PurchaseRefunded
from tests.e2e.emails_support import new_customer, publish, purchase
from tests.support import eventually

pytestmark = pytest.mark.e2e


def own_template(notifications: httpx.Client, name: str, subject: str) -> None:
    saved = notifications.put(f"/admin/templates/{name}", json={
        "subject": subject, "text": "Hello {{ email }}, about {{ offer_name }}: {{ offer_url }}",
        "html": '<p>About {{ offer_name }}</p><a href="{{ offer_url }}" style="{{ style.button }}">See it</a>'})
    assert saved.status_code == 200, saved.text


def run_until(notifications: httpx.Client, customer_id: str, moment: datetime) -> dict:
    answer = notifications.post("/admin/sandbox/follow-ups", json={"customer_id": customer_id,
                                                                   "until": moment.isoformat()})
    assert answer.status_code == 200, answer.text
    return answer.json()


def sent_keys(notifications: httpx.Client, customer_id: str, prefix: str) -> list[str]:
    return sorted(e["key"] for e in notifications.get("/admin/emails", params={"customer_id": customer_id}).json()
                  if e["key"].startswith(prefix))


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_a_three_step_sequence_is_sent_on_time_and_stopped_by_a_refund(suite, store, smtp_inbox,
                                                                            kafka_bootstrap):
    name = f"tips-{uuid.uuid4().hex[:6]}"
    with suite.admin("notifications") as notifications:
        own_template(notifications, name, "Step {{ step }}: getting the most of {{ offer_name }}")
        refused = notifications.post("/admin/sequences", json={"offer_id": store.offer_id, "name": "x", "steps": [
            {"delay_hours": 1, "template": "no-such-template"}]})
        assert refused.status_code == 422 and "no email template no-such-template" in refused.text
        # Postsale's own emails read their event's values (a checkout), which a follow-up has not.
        unfit = notifications.post("/admin/sequences", json={"offer_id": store.offer_id, "name": "x", "steps": [
            {"delay_hours": 1, "template": "abandoned_checkout"}]})
        assert unfit.status_code == 422 and "abandoned_checkout cannot be a follow-up" in unfit.json()["detail"]
        created = notifications.post("/admin/sequences", json={"offer_id": store.offer_id, "name": "Onboarding",
                                                               "steps": [{"delay_hours": 1, "template": name},
                                                                         {"delay_days": 2, "template": name},
                                                                         {"delay_days": 7, "template": name}]})
        assert created.status_code == 201, created.text
        sequence_id = created.json()["id"]
        assert [s["delay_hours"] for s in created.json()["steps"]] == [1, 48, 168]

        customer_id, email = new_customer()
        t0 = datetime.now(timezone.utc)
        bought = purchase(customer_id, email, offer_id=store.offer_id, offer_name="Yoga Basics",
                          products=[(store.product_id, store.product_name)], at=t0)
        await publish(kafka_bootstrap, bought)
        smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{bought.purchase_id}",
                            timeout=60)
        key = f"follow-up:{sequence_id}:{bought.purchase_id}"

        assert run_until(notifications, customer_id, t0 + timedelta(minutes=59))["ran"] == 0
        assert sent_keys(notifications, customer_id, "follow-up:") == []
        assert run_until(notifications, customer_id, t0 + timedelta(hours=1))["ran"] == 1
        first = smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"{key}:1", timeout=60)
        assert first["To"] == email and first["Subject"] == "Step 1: getting the most of Yoga Basics"
        assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"{suite.url('checkout')}/offers/{store.offer_id}" in first.get_body(("plain",)).get_content()

        assert run_until(notifications, customer_id, t0 + timedelta(days=2) - timedelta(minutes=1))["ran"] == 0
        ran = run_until(notifications, customer_id, t0 + timedelta(days=2))
        assert ran["ran"] == 1 and ran["pending"] == [f"{key}:3"]
        smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"{key}:2", timeout=60)

        refund = PurchaseRefunded(refund_id=f"re_{uuid.uuid4().hex[:12]}", purchase_id=bought.purchase_id,
                                  customer_id=customer_id, email=email, amount=Money(amount=4900, currency="EUR"),
                                  total_refunded=Money(amount=4900, currency="EUR"), full=True, actor="seller",
                                  refunded_at=t0 + timedelta(days=3))
        await publish(kafka_bootstrap, refund)
        smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"refund-confirmation:{refund.refund_id}",
                            timeout=60)
        ran = run_until(notifications, customer_id, t0 + timedelta(days=8))
        assert ran["ran"] == 1 and ran["pending"] == []
        assert sent_keys(notifications, customer_id, "follow-up:") == [f"{key}:1", f"{key}:2"]
        logged = eventually(lambda: next((e for e in notifications.get("/admin/emails", params={
            "customer_id": customer_id}).json() if e["key"] == f"{key}:2" and e["status"] == "sent"), None))
        assert logged["to"] == email and logged["marketing"] and logged["message_id"] and logged["sent_at"]
        assert notifications.delete(f"/admin/sequences/{sequence_id}").status_code == 204
    assert not smtp_inbox.with_key(f"{key}:3")


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
async def test_a_follow_up_offer_fires_by_its_rule_and_not_for_its_counter_case(suite, store, smtp_inbox,
                                                                                kafka_bootstrap):
    name = f"offer-{uuid.uuid4().hex[:6]}"
    advanced = f"offer_adv_{uuid.uuid4().hex[:6]}"
    with suite.admin("notifications") as notifications:
        own_template(notifications, name, "Ready for the next step after {{ offer_name }}?")
        incomplete = notifications.post("/admin/rules", json={"trigger": "bought_without", "offer_id": store.offer_id,
                                                              "days": 3, "template": name, "link_offer_id": advanced})
        assert incomplete.status_code == 422 and "other_offer_id" in incomplete.text
        rule = notifications.post("/admin/rules", json={
            "trigger": "bought_without", "offer_id": store.offer_id, "other_offer_id": advanced, "days": 3,
            "template": name, "link_offer_id": advanced})
        assert rule.status_code == 201, rule.text
        rule_id = rule.json()["id"]

        t0 = datetime.now(timezone.utc)
        (only_a, only_a_email), (both, both_email) = new_customer(), new_customer()
        first = purchase(only_a, only_a_email, offer_id=store.offer_id, offer_name="Yoga Basics",
                         products=[(store.product_id, store.product_name)], at=t0)
        second = purchase(both, both_email, offer_id=store.offer_id, offer_name="Yoga Basics",
                          products=[(store.product_id, store.product_name)], at=t0)
        upgrade = purchase(both, both_email, offer_id=advanced, offer_name="Yoga Advanced",
                           products=[(store.product_id, store.product_name)], at=t0 + timedelta(days=1))
        await publish(kafka_bootstrap, first, second, upgrade)
        for bought in (first, second, upgrade):
            smtp_inbox.wait_for(lambda m: m["X-Postsale-Email-Key"] == f"purchase-confirmation:{bought.purchase_id}",
                                timeout=60)

        for customer_id in (only_a, both):
            assert run_until(notifications, customer_id, t0 + timedelta(days=3) - timedelta(minutes=1))["ran"] == 0
            assert run_until(notifications, customer_id, t0 + timedelta(days=3))["ran"] == 1
        offer = smtp_inbox.wait_for(
            lambda m: m["X-Postsale-Email-Key"] == f"follow-up-offer:{rule_id}:{first.purchase_id}", timeout=60)
        assert offer["To"] == only_a_email and offer["Subject"] == "Ready for the next step after Yoga Basics?"
        assert f"{suite.url('checkout')}/offers/{advanced}" in offer.get_body(("html",)).get_content()
        assert sent_keys(notifications, both, "follow-up-offer:") == []
        assert notifications.delete(f"/admin/rules/{rule_id}").status_code == 204
