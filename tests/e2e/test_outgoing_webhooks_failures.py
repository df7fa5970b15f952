"""Webhooks on PostgreSQL when an endpoint or the seller sends what PostgreSQL will not keep in
text (a NUL byte): the answer is recorded without it and the customer's queue moves on; an id or
a field with one is a clear 4xx, never a 500."""

from __future__ import annotations

import pytest

from tests.e2e.test_outgoing_webhooks import SellerEndpoint, deliveries, publish, purchase_event, register
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("suite", ["postgresql"], indirect=True)]


async def test_an_answer_with_a_nul_byte_is_recorded_and_the_next_delivery_goes_out(suite, kafka_bootstrap):
    endpoint = SellerEndpoint(200, says=b"ok\x00thanks")
    try:
        created = register(suite, endpoint, "postsale.purchase.completed", alert_email="ops@seller.test")
        first = purchase_event()
        second = first.model_copy(update={"purchase_id": first.purchase_id + "_2"})  # the same customer's next
        await publish(kafka_bootstrap, first)
        await publish(kafka_bootstrap, second)

        def both_delivered():
            found = deliveries(suite, created["id"])
            return len(found) == 2 and all(d["status"] == "delivered" for d in found) and found

        sent = eventually(both_delivered, timeout=60)
    finally:
        endpoint.close()

    assert [d["payload"]["data"]["purchase_id"] for d in reversed(sent)] == [first.purchase_id, second.purchase_id]
    assert all(d["recent_attempts"][0]["response_excerpt"] == "okthanks" for d in sent)


def test_a_nul_in_an_id_or_a_field_is_a_clear_answer(suite):
    endpoint = SellerEndpoint(200)
    try:
        created = register(suite, endpoint, "postsale.purchase.completed", alert_email="ops@seller.test")
        with suite.admin("notifications") as admin:
            answers = {
                "endpoint": admin.get("/admin/webhook-endpoints/we_%00x"),
                "its deliveries": admin.get("/admin/webhook-endpoints/we_%00x/deliveries"),
                "replay": admin.post("/admin/webhook-deliveries/msg_%00x/replay"),
                "before": admin.get(f"/admin/webhook-endpoints/{created['id']}/deliveries", params={"before": "\x00"}),
                "new description": admin.post("/admin/webhook-endpoints", json={
                    "url": endpoint.url, "event_types": ["postsale.purchase.completed"], "description": "CRM\x00",
                    "alert_emails": ["ops@seller.test"]}),
                "changed description": admin.patch(f"/admin/webhook-endpoints/{created['id']}",
                                                   json={"description": "\x00"}),
            }
    finally:
        endpoint.close()

    # A NUL in the address is refused before any route runs; one in a body by the body's model.
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "endpoint": 400, "its deliveries": 400, "replay": 400, "before": 400, "new description": 422,
        "changed description": 422}
    assert all("NUL" in answers[name].json()["detail"] for name in ("endpoint", "its deliveries", "replay", "before"))
    assert "NUL" in str(answers["new description"].json()["detail"])
