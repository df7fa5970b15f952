"""Payment providers: the sandbox for demos and browser tests, and Stripe."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import stripe


@dataclass(frozen=True)
class ChargeResult:
    succeeded: bool
    payment_id: str | None = None
    decline_message: str | None = None


class SandboxProvider:
    """Charges test cards without any network: one card succeeds, the others decline."""

    name = "sandbox"
    SUCCEEDS = "4242424242424242"
    DECLINES = {
        "4000000000000002": "Your card was declined.",
        "4000000000009995": "Your card has insufficient funds.",
        "4000000000000069": "Your card has expired.",
    }

    def charge(self, *, amount: int, currency: str, card_number: str, idempotency_key: str) -> ChargeResult:
        digits = "".join(ch for ch in card_number if ch.isdigit())
        if digits == self.SUCCEEDS:
            # Keyed on the attempt, as a real provider's idempotency key: a retried charge
            # of the same attempt yields the same payment.
            return ChargeResult(True, payment_id=f"sbx_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:24]}")
        if digits in self.DECLINES:
            return ChargeResult(False, decline_message=self.DECLINES[digits])
        return ChargeResult(
            False,
            decline_message=f"This is the sandbox: use the test card {self.SUCCEEDS[:4]} {self.SUCCEEDS[4:8]} "
            f"{self.SUCCEEDS[8:12]} {self.SUCCEEDS[12:]}.",
        )


class StripeGateway:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None, webhook_secret: str | None) -> None:
        base = {"api": api_base} if api_base else {}
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=2)
        self.webhook_secret = webhook_secret

    def create_payment_intent(self, *, amount: int, currency: str, checkout_session_id: str) -> stripe.PaymentIntent:
        return self.client.v1.payment_intents.create(
            params={
                "amount": amount,
                "currency": currency.lower(),
                "metadata": {"postsale_checkout_session": checkout_session_id},
                "automatic_payment_methods": {"enabled": True},
            },
            options={"idempotency_key": f"checkout-session:{checkout_session_id}"},
        )

    def verify_webhook(self, payload: bytes, signature: str | None) -> stripe.Event:
        """The event in a webhook, or ValueError/SignatureVerificationError when it is not Stripe's."""
        if not self.webhook_secret:
            raise ValueError("Stripe webhooks are not configured (CHECKOUT_STRIPE_WEBHOOK_SECRET)")
        if not signature:
            raise stripe.SignatureVerificationError("missing Stripe-Signature header", signature, payload)
        return stripe.Webhook.construct_event(payload, signature, self.webhook_secret)
