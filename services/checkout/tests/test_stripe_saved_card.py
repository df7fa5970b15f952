"""The Stripe adapter reads a saved card (brand, last 4, expiry) from its PaymentMethod, against stripe-mock."""

from __future__ import annotations

import pytest
from stripe_support import API_KEY, WEBHOOK_SECRET

from postsale.checkout.adapters.payments.port import SavedCard
from postsale.checkout.adapters.payments.stripe import StripeProvider

pytestmark = pytest.mark.integration


def test_the_saved_card_is_read_from_the_payment_method(stripe_mock):
    card = StripeProvider(API_KEY, stripe_mock.api_base, WEBHOOK_SECRET).saved_card("pm_card_visa")
    # stripe-mock answers with its fixture card: a Visa ending 4242 that expires in August 2030.
    assert card == SavedCard(brand="visa", last4="4242", exp_month=8, exp_year=2030)
