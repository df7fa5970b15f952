"""What the Stripe adapter's tests share: the keys they configure it with and a PaymentIntent as Stripe sends it."""

from __future__ import annotations

WEBHOOK_SECRET = "whsec_stripe_provider_tests"
API_KEY = "sk_test_postsale"


def payment_intent(status: str, **fields) -> dict:
    """A PaymentIntent as Stripe sends it (the fields the adapter reads)."""
    return {"id": "pi_1", "object": "payment_intent", "status": status, "amount": 4900, "currency": "eur",
            "customer": "cus_1", "payment_method": "pm_1", "client_secret": "pi_1_secret_x",
            "metadata": {"postsale_checkout_session": "cs_1"}, "last_payment_error": None, "next_action": None,
            **fields}
