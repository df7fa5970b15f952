"""Postsale's message contracts: the one place where a Kafka message is defined.

A downstream system needs only this package (and Pydantic) to read Postsale's topics:

    from postsale.contracts import decode, PurchaseCompleted, topics
    event = decode(record.headers, record.value)
"""

from postsale.contracts import topics
from postsale.contracts.base import Event, Money
from postsale.contracts.envelope import (
    EVENT_TYPES,
    SPEC_VERSION,
    DecodeError,
    UnknownEventType,
    decode,
    encode,
)
from postsale.contracts.events import (
    AccessGranted,
    AccountActivated,
    CustomerRegistered,
    EmailSent,
    ProductPublished,
    PurchaseCompleted,
    PurchasedProduct,
)

__all__ = [
    "EVENT_TYPES",
    "SPEC_VERSION",
    "AccessGranted",
    "AccountActivated",
    "CustomerRegistered",
    "DecodeError",
    "EmailSent",
    "Event",
    "Money",
    "ProductPublished",
    "PurchaseCompleted",
    "PurchasedProduct",
    "UnknownEventType",
    "decode",
    "encode",
    "topics",
]
