import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from postsale.contracts import (
    DecodeError, Money, ProductPublished, PurchaseCompleted, PurchasedProduct, UnknownEventType, decode, delivery_fields,
    delivery_kind_of, encode, topics,
)

pytestmark = pytest.mark.unit


def purchase() -> PurchaseCompleted:
    return PurchaseCompleted(
        purchase_id="pur_1", customer_id="cus_1", email="ann@example.com", offer_id="offer_1", offer_name="Course",
        products=[PurchasedProduct(product_id="prod_1", name="Course", delivery_type="membership")],
        amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_1",
        completed_at=datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc), new_customer=True,
    )


def test_an_event_travels_as_a_binary_mode_cloudevent():
    headers, value = encode(purchase(), source="/postsale/checkout", event_id="evt-1")
    assert headers["ce_id"] == b"evt-1"
    assert headers["ce_type"] == b"postsale.purchase.completed"
    assert headers["ce_source"] == b"/postsale/checkout"
    assert headers["ce_subject"] == b"pur_1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["content-type"] == b"application/json"
    assert decode(list(headers.items()), value) == purchase()
    assert purchase().topic == topics.PURCHASES.name
    assert purchase().key() == "cus_1"


def test_a_reader_ignores_fields_it_does_not_know():
    headers, value = encode(purchase(), source="/t")
    newer = value.replace(b'{"purchase_id"', b'{"added_in_a_later_minor":1,"purchase_id"')
    assert decode(headers, newer) == purchase()


@pytest.mark.parametrize(
    ("headers", "value", "message"),
    [
        ({}, b"{}", "missing header(s) ce_id, ce_type, ce_source, ce_specversion"),
        ({"ce_id": "1", "ce_type": "postsale.purchase.completed", "ce_source": "/t", "ce_specversion": "0.3"}, b"{}",
         "unsupported CloudEvents specversion"),
        ({"ce_id": "1", "ce_type": "postsale.purchase.completed", "ce_source": "/t", "ce_specversion": "1.0"},
         b"{not json", "invalid postsale.purchase.completed payload"),
        ({"ce_id": "1", "ce_type": "postsale.purchase.completed", "ce_source": "/t", "ce_specversion": "1.0"},
         b'{"purchase_id": "p"}', "invalid postsale.purchase.completed payload"),
        ({"ce_id": "1", "ce_type": "postsale.product.published", "ce_source": "/t", "ce_specversion": "1.0"},
         None, "has no payload"),
    ],
)
def test_a_record_that_is_not_an_event_is_refused_with_the_reason(headers, value, message):
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(headers, value)


def test_an_unknown_event_type_is_told_apart_so_readers_can_skip_it():
    with pytest.raises(UnknownEventType) as raised:
        decode({"ce_id": "1", "ce_type": "postsale.something.new", "ce_source": "/t", "ce_specversion": "1.0"}, b"{}")
    assert raised.value.event_type == "postsale.something.new"


def test_times_must_carry_their_zone():
    with pytest.raises(ValueError):
        ProductPublished(product_id="p", name="n", delivery_type="download", published_at=datetime(2026, 1, 1))


def test_a_license_key_product_reads_as_the_nearest_1_0_kind_to_an_older_reader():
    event = ProductPublished(product_id="prod_1", name="Plugin", **delivery_fields("license_key"),
                             published_at=datetime(2026, 11, 22, tzinfo=timezone.utc))
    released = Path(__file__).parents[2] / "contracts" / "released" / "1.0.0" / "schemas" / topics.PRODUCTS.name
    schema = json.loads((released / f"{ProductPublished.event_type}.json").read_text())
    jsonschema.validate(json.loads(encode(event, source="/postsale/entitlements")[1]), schema)
    assert (event.delivery_type, delivery_kind_of(event)) == ("download", "license_key")
    assert delivery_kind_of(ProductPublished(product_id="p", name="Club", delivery_type="membership",
                                             published_at=event.published_at)) == "membership"
