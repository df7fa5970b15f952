"""The sandbox provider: Stripe's test cards with their documented meanings, idempotent per key."""

import pytest

from postsale.checkout.adapters.payments.sandbox import UNKNOWN_CARD, SandboxProvider
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.setup_tokens import setup_token, token_sha256
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.unit


@pytest.fixture
def sandbox(tmp_path) -> SandboxProvider:
    engine = make_engine(f"sqlite:///{tmp_path / 'checkout.db'}")
    migrate(engine, MIGRATIONS_DIR)
    return SandboxProvider(engine, action_base_url="http://checkout.test")


def pay(sandbox: SandboxProvider, card: str, *, key: str = "cs_1:pay:0", amount: int = 4900, attempt: str = "cs_1"):
    return sandbox.start_payment(attempt_id=attempt, amount=amount, currency="EUR", email="ann@example.com",
                                 idempotency_key=key, details={"card_number": card})


def test_the_success_card_pays_and_the_same_key_yields_the_same_payment(sandbox):
    first = pay(sandbox, "4242 4242 4242 4242")
    again = pay(sandbox, "4242424242424242")
    other = pay(sandbox, "4242424242424242", key="cs_2:pay:0", attempt="cs_2")
    assert first.succeeded and first.payment_id == again.payment_id != other.payment_id
    assert (first.amount, first.currency, first.attempt_id) == (4900, "EUR", "cs_1")
    later = sandbox.charge_saved(payment_method_id=first.payment_method_id, customer_ref=None, amount=1500,
                                 currency="EUR", attempt_id="cs_1", idempotency_key="cs_1:upsell:o")
    assert later.succeeded and later.payment_id != first.payment_id


@pytest.mark.parametrize(("card", "message"), [
    ("4000 0000 0000 0002", "Your card was declined."),
    ("4000000000009995", "Your card has insufficient funds."),
    ("4000000000000069", "Your card has expired."),
    ("1234", UNKNOWN_CARD),
])
def test_decline_cards_decline_with_their_message(sandbox, card, message):
    result = pay(sandbox, card)
    assert (result.status, result.message) == ("declined", message)


def test_the_0341_card_attaches_for_a_trial_but_every_charge_fails(sandbox):
    assert pay(sandbox, "4000000000000341").status == "declined"
    trial = pay(sandbox, "4000000000000341", key="cs_1:pay:1", amount=0)
    assert trial.succeeded and trial.payment_method_id
    renewal = sandbox.charge_saved(payment_method_id=trial.payment_method_id, customer_ref=None, amount=1900,
                                   currency="EUR", attempt_id="cs_1", idempotency_key="renewal-1")
    assert (renewal.status, renewal.message) == ("declined", "Your card was declined.")


def test_the_3155_card_asks_for_3d_secure_then_charges_off_session_without_it(sandbox):
    started = pay(sandbox, "4000 0025 0000 3155")
    assert started.status == "requires_action"
    assert started.action_url == f"http://checkout.test/sandbox/authenticate/{started.payment_id}"
    approved = sandbox.authenticate(started.payment_id, approved=True)
    assert approved.succeeded and sandbox.payment_result(started.payment_id).succeeded
    upsell = sandbox.charge_saved(payment_method_id=approved.payment_method_id, customer_ref=None, amount=900,
                                  currency="EUR", attempt_id="cs_1", idempotency_key="cs_1:upsell:x")
    assert upsell.succeeded
    failed = pay(sandbox, "4000002500003155", key="cs_3:pay:0", attempt="cs_3")
    assert sandbox.authenticate(failed.payment_id, approved=False).status == "declined"


def test_refunds_never_exceed_what_was_paid(sandbox):
    paid = pay(sandbox, "4242424242424242")
    assert sandbox.refund(payment_id=paid.payment_id, amount=1000, idempotency_key="r1").succeeded
    too_much = sandbox.refund(payment_id=paid.payment_id, amount=3901, idempotency_key="r2")
    assert not too_much.succeeded


def test_the_setup_token_is_stable_per_checkout_and_only_its_hash_is_published():
    token = setup_token("secret-key-of-the-store", "cs_1")
    assert token == setup_token("secret-key-of-the-store", "cs_1")
    assert token != setup_token("secret-key-of-the-store", "cs_2")
    assert token != setup_token("another-store-secret-key", "cs_1")
    assert token_sha256(token) != token and len(token_sha256(token)) == 64
