"""The Stripe adapter reads a saved card (brand, last 4, expiry) from its PaymentMethod, against stripe-mock."""

from __future__ import annotations

import pytest
from stripe_support import API_KEY, WEBHOOK_SECRET

from postsale.checkout.adapters.payments.stripe import StripeProvider

pytestmark = pytest.mark.integration


def test_the_saved_card_is_read_from_the_payment_method(stripe_mock):
    card = StripeProvider(API_KEY, stripe_mock.api_base, WEBHOOK_SECRET).saved_card("pm_card_visa")
    assert card is not None and card.brand == "visa"
    assert len(card.last4) == 4 and card.last4.isdigit()
    assert 1 <= card.exp_month <= 12 and card.exp_year >= 2000
