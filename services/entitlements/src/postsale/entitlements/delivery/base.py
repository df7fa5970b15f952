"""What a delivery strategy is, and the errors it may raise.

A strategy delivers one delivery type (`membership`, `download`, `integration`, `license_key`,
`none`): `grant` when a customer's grant becomes active (granted, or restored), `revoke` when it
stops being active (revoked, expired, suspended). The runner (`runner.py`) calls it with a
`Delivery` row that says which grant, which change and why, and records every attempt.

A strategy either returns a `Result` or raises one of the typed errors:

- `RetryLater`: it failed for now (a third party did not answer, the seller has not uploaded the
  file yet); the runner tries again on `RETRY_SCHEDULE`, for up to three days;
- `CustomerMustAct`: nothing will change until the customer does something; not retried;
- `DeliveryFailed`: retrying cannot help (the endpoint answered 410 Gone); not retried.

Any other exception counts as `RetryLater`. The attempt runs in a savepoint, so what a failing
strategy wrote is undone while the failure itself is recorded in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel
from sqlmodel import Session, select

from postsale.entitlements.adapters.tables import Delivery, Grant, Product
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.domain.access import GrantView, is_active
from postsale.runtime.clock import as_utc
from postsale.runtime.settings import PublicUrls

# The Standard Webhooks example schedule (after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h), with one more 20 h wait: the last attempt is 71 h 35 min after the first.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5),
    timedelta(hours=10), timedelta(hours=14), timedelta(hours=20), timedelta(hours=20),
)
MAX_WAIT = timedelta(hours=24)  # a Retry-After asking for longer is cut to this
STILL_GIVEN = "another grant still gives the customer this product"


class RetryLater(Exception):
    """Failed for now; try again later (no sooner than `after`, when given)."""

    def __init__(self, message: str, *, after: timedelta | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.after, self.status_code = after, status_code


class CustomerMustAct(Exception):
    """Nothing will change until the customer acts; the message says what they must do."""


class DeliveryFailed(Exception):
    """Failed for good: retrying cannot help."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Result:
    status: Literal["done", "skipped"] = "done"
    detail: str = ""
    status_code: int | None = None


@dataclass
class DeliveryContext:
    """What a strategy may use: the transaction, the time, the settings, and an HTTP client for
    the strategies that call out (the scheduler's; None inside an access change)."""

    session: Session
    now: datetime
    settings: DeliverySettings
    urls: PublicUrls
    http: httpx.Client | None = None

    def product(self, delivery: Delivery) -> Product | None:
        return self.session.get(Product, delivery.product_id)

    def grant(self, delivery: Delivery) -> Grant:
        grant = self.session.get(Grant, delivery.grant_id)
        if grant is None:
            raise DeliveryFailed(f"grant {delivery.grant_id} is gone")
        return grant


class DeliveryStrategy(Protocol):
    delivery_type: ClassVar[str]
    runs_inline: ClassVar[bool]
    """True: local work, done at once in the transaction of the access change (and retried by the
    scheduler if it fails). False: done by the scheduler right after that transaction commits."""
    one_per_product: ClassVar[bool]
    """True: a newer change of the customer's product supersedes this strategy's waiting deliveries."""
    settings_model: ClassVar[type[BaseModel]]
    """The product's settings for this delivery type (`Product.delivery_settings`)."""

    def configure(self, settings: BaseModel) -> BaseModel:
        """A product's settings as the seller gave them, completed (e.g. a secret made)."""
        ...

    def prepare(self, ctx: DeliveryContext, delivery: Delivery) -> None:
        """Before each attempt, outside its savepoint: fix what every attempt must send alike."""

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        ...

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        ...

    def failed_attempt(self, ctx: DeliveryContext, delivery: Delivery, error: str,
                       next_attempt_at: datetime | None) -> None:
        """After an attempt that failed (`next_attempt_at` None: no more attempts)."""


class NoSettings(BaseModel):
    pass


class BaseStrategy:
    """Defaults for a strategy: inline, independent deliveries, no settings, nothing to prepare."""

    runs_inline: ClassVar[bool] = True
    one_per_product: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = NoSettings

    def configure(self, settings: BaseModel) -> BaseModel:
        return settings

    def prepare(self, ctx: DeliveryContext, delivery: Delivery) -> None:
        return None

    def failed_attempt(self, ctx: DeliveryContext, delivery: Delivery, error: str,
                       next_attempt_at: datetime | None) -> None:
        return None


def still_given(session: Session, customer_id: str, product_id: str, but_for_grant: str, now: datetime) -> bool:
    """Whether another active grant still gives the customer the product."""
    grants = session.exec(select(Grant).where(Grant.customer_id == customer_id, Grant.product_id == product_id,
                                              Grant.id != but_for_grant)).all()
    return any(is_active(GrantView(g.id, g.product_id, g.status, as_utc(g.ends_at)), now)  # type: ignore[arg-type]
               for g in grants)


SettingsModel = TypeVar("SettingsModel", bound=BaseModel)


def product_settings(product: Product | None, model: type[SettingsModel]) -> SettingsModel:
    """The product's delivery settings as `model` (its defaults where the seller set nothing)."""
    return model.model_validate((product.delivery_settings if product is not None else None) or {})
