import pytest

from postsale.checkout.adapters.payments import SandboxProvider
from postsale.checkout.domain.setup_tokens import setup_token, token_sha256

pytestmark = pytest.mark.unit


def test_the_success_card_charges_and_the_same_attempt_yields_the_same_payment():
    sandbox = SandboxProvider()
    first = sandbox.charge(amount=4900, currency="EUR", card_number="4242 4242 4242 4242", idempotency_key="cs_1")
    again = sandbox.charge(amount=4900, currency="EUR", card_number="4242424242424242", idempotency_key="cs_1")
    other = sandbox.charge(amount=4900, currency="EUR", card_number="4242424242424242", idempotency_key="cs_2")
    assert first.succeeded and first.payment_id == again.payment_id != other.payment_id


@pytest.mark.parametrize(("card", "message"), [
    ("4000 0000 0000 0002", "Your card was declined."),
    ("4000000000009995", "Your card has insufficient funds."),
    ("1234", "This is the sandbox: use the test card 4242 4242 4242 4242."),
])
def test_other_cards_decline_with_a_clear_message(card, message):
    result = SandboxProvider().charge(amount=100, currency="EUR", card_number=card, idempotency_key="cs")
    assert (result.succeeded, result.decline_message) == (False, message)


def test_the_setup_token_is_stable_per_checkout_and_only_its_hash_is_published():
    token = setup_token("secret-key-of-the-store", "cs_1")
    assert token == setup_token("secret-key-of-the-store", "cs_1")
    assert token != setup_token("secret-key-of-the-store", "cs_2")
    assert token != setup_token("another-store-secret-key", "cs_1")
    assert token_sha256(token) != token and len(token_sha256(token)) == 64
