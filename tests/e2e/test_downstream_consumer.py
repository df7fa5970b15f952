"""A downstream system on another Kafka client reads what checkout really published."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest

from postsale.contracts import PurchaseCompleted
from tests.support import start_checkout

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def documented_consumer():
    """The consumer example of docs/contracts.md, run as it is documented."""
    spec = importlib.util.spec_from_file_location("consume_purchases", ROOT / "docs" / "examples" / "consume_purchases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_confluent_kafka_consumer_decodes_and_validates_a_published_purchase(suite, store, kafka_bootstrap):
    email = f"downstream-{uuid.uuid4().hex[:8]}@example.com"
    browser = httpx.Client(timeout=10)
    trace_id = uuid.uuid4().hex
    paid = browser.post(f"{start_checkout(browser, suite, store.offer_id, email)}/pay",
                        data={"card_number": "4242424242424242"},
                        headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    assert paid.status_code == 303
    assert paid.headers["x-trace-id"] == trace_id

    received: list[tuple[PurchaseCompleted, bytes, dict[str, bytes]]] = []

    def handle(event, record) -> bool:
        if isinstance(event, PurchaseCompleted) and event.email == email:
            received.append((event, record.value(), dict(record.headers())))
            return True
        return False

    documented_consumer().consume(kafka_bootstrap, f"downstream-{uuid.uuid4().hex}", handle, idle_timeout=30)

    assert received, "the downstream consumer never saw the purchase"
    event, value, headers = received[0]
    assert (event.offer_id, event.amount.amount, event.amount.currency) == (store.offer_id, 4900, "EUR")
    assert [p.product_id for p in event.products] == [store.product_id]
    assert headers["ce_type"] == b"postsale.purchase.completed"
    assert headers["ce_source"] == b"/postsale/checkout"
    assert headers["ce_subject"] == event.purchase_id.encode()
    assert headers["ce_traceparent"].decode().split("-")[1] == trace_id  # the buyer's request's trace
    schema = json.loads((ROOT / "contracts" / "schemas" / "checkout.purchases.v1" / "postsale.purchase.completed.json").read_text())
    jsonschema.validate(json.loads(value), schema)
