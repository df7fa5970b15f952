"""What every event shares."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

SECRET_MARK = "x-postsale-secret"


class Contract(BaseModel):
    # Readers ignore fields they do not know: inside a major version a schema only gains
    # optional fields, so an older reader must still parse a newer writer's message.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Event(Contract):
    """A fact one service publishes for any number of subscribers.

    `event_type` is the CloudEvents `ce_type`; `topic` is where the event is published;
    `subject_field` names the entity it is about (`ce_subject`) and `key_field` the Kafka
    record key that keeps related events in order on one partition.
    """

    event_type: ClassVar[str]
    topic: ClassVar[str]
    subject_field: ClassVar[str]
    key_field: ClassVar[str] = "customer_id"

    def subject(self) -> str:
        return str(getattr(self, self.subject_field))

    def key(self) -> str:
        return str(getattr(self, self.key_field))


class Money(Contract):
    """An amount in minor units (cents) of an ISO 4217 currency."""

    amount: int = Field(description="Amount in the currency's minor units, e.g. 4900 for 49.00 EUR.")
    currency: str = Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$", description="ISO 4217 code.")


def secret(description: str, **kwargs: Any) -> Any:
    """A field whose value lets its holder act as the customer: allowed on restricted topics only."""
    return Field(description=description, json_schema_extra={SECRET_MARK: True}, **kwargs)
