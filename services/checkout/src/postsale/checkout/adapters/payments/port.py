"""The payment provider port: what checkout's use cases ask of any provider.

Two adapters implement it: the sandbox (test cards, no money moves) and Stripe. A use case
never branches on which one it talks to; only the payment page differs in what it shows
(a card field for the sandbox, Stripe's Payment Element for Stripe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Protocol

PaymentStatus = Literal["succeeded", "declined", "requires_action", "processing"]


@dataclass(frozen=True)
class PaymentResult:
    """Where a payment stands at the provider.

    `requires_action`: the buyer must act in the browser: confirm with Stripe.js and
    `client_secret`, or authenticate (3-D Secure) at `action_url`.
    """

    status: PaymentStatus
    payment_id: str | None = None
    payment_method_id: str | None = None  # saved for off-session charges (upsells, renewals)
    customer_ref: str | None = None  # the provider's customer that owns the saved method
    amount: int | None = None
    currency: str | None = None
    attempt_id: str | None = None
    message: str | None = None  # why it was declined, in words for the buyer
    client_secret: str | None = None
    action_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class SavedCard:
    """A saved card as the provider describes it: enough to tell the customer which card expires when."""

    brand: str | None
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    amount: int
    succeeded: bool
    message: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    """A refund the provider made, asked here or in its own dashboard."""

    refund_id: str
    payment_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ProviderDispute:
    dispute_id: str
    payment_id: str
    amount: int
    currency: str
    status: Literal["open", "won", "lost"]
    reason: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A provider's webhook (or an event the sandbox reports), verified and in Postsale's terms."""

    event_id: str
    type: str
    payment: PaymentResult | None = None
    refunds: tuple[ProviderRefund, ...] = ()
    dispute: ProviderDispute | None = None


class PaymentError(Exception):
    """The provider could not be reached or refused the request itself (not a decline)."""


class PaymentProvider(Protocol):
    name: str
    test_mode: bool  # no money moves (the sandbox, Stripe's test mode): the lifecycle simulator may run

    def start_payment(self, *, attempt_id: str, amount: int, currency: str, email: str, idempotency_key: str,
                      details: Mapping[str, str]) -> PaymentResult:
        """Charge the buyer on the payment page and save the method for off-session use.

        An `amount` of 0 (a free trial) only saves the method. `details` is what the page
        posted (the sandbox's card number; nothing for Stripe, whose card form talks to Stripe).
        The same `idempotency_key` always yields the same payment.
        """

    def payment_result(self, payment_id: str) -> PaymentResult:
        """The current state of a payment, e.g. when the buyer returns from 3-D Secure."""

    def charge_saved(self, *, payment_method_id: str, customer_ref: str | None, amount: int, currency: str,
                     attempt_id: str, idempotency_key: str) -> PaymentResult:
        """Charge a saved method without the buyer (an upsell, a renewal): no card entry."""

    def refund(self, *, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        """Refund `amount` of a payment, in full or in part."""

    def saved_card(self, payment_method_id: str) -> SavedCard | None:
        """The card behind a saved method; None when the method is not a card (or is unknown)."""

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify a webhook on its raw body; ValueError when it is not the provider's."""

    def pending_events(self) -> list[WebhookEvent]:
        """Events the provider reports without a webhook (the sandbox's disputes), until acknowledged."""

    def acknowledge(self, event: WebhookEvent) -> None:
        """The event from `pending_events` is handled (and recorded): not reported again."""
