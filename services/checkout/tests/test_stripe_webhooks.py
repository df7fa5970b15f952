"""The Stripe adapter's parse_webhook: payment, setup, refund and dispute events, signed as Stripe signs them,
and the signatures it refuses."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
import stripe
from stripe_support import API_KEY, WEBHOOK_SECRET, payment_intent

from postsale.checkout.adapters.payments.port import PaymentResult, ProviderDispute, ProviderRefund, WebhookEvent
from postsale.checkout.adapters.payments.stripe import StripeProvider


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme, computed here rather than by the library under test:
    `t=<unix time>,v1=<HMAC-SHA256 of "t.payload">`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def event(event_type: str, intent: dict) -> bytes:
    return json.dumps({
        "id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": event_type, "api_version": "2024-06-20",
        "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
        "data": {"object": intent},
    }).encode()


@pytest.fixture
def webhooks() -> StripeProvider:
    # Verifying a webhook asks nothing of Stripe: no API address is reached.
    return StripeProvider(API_KEY, "http://127.0.0.1:9", WEBHOOK_SECRET)


def _parse(provider: StripeProvider, payload: bytes, **headers) -> WebhookEvent:
    return provider.parse_webhook(payload, {"Stripe-Signature": sign(payload), **headers})


@pytest.mark.unit
def test_a_payment_intent_succeeded_webhook(webhooks):
    payload = event("payment_intent.succeeded", payment_intent("succeeded", amount=6800, currency="eur"))
    parsed = _parse(webhooks, payload)
    assert parsed == WebhookEvent(json.loads(payload)["id"], "payment_intent.succeeded", payment=PaymentResult(
        "succeeded", payment_id="pi_1", payment_method_id="pm_1", customer_ref="cus_1", amount=6800, currency="EUR",
        attempt_id="cs_1"))


@pytest.mark.unit
def test_a_webhook_carries_the_amount_and_currency_stripe_sent(webhooks):
    # Not the attempt's: comparing them with the attempt is the use case's job.
    parsed = _parse(webhooks, event("payment_intent.succeeded", payment_intent("succeeded", amount=1, currency="jpy")))
    assert (parsed.payment.amount, parsed.payment.currency) == (1, "JPY")


@pytest.mark.unit
def test_a_payment_failed_webhook_is_a_decline_with_stripes_message(webhooks):
    intent = payment_intent("requires_payment_method", payment_method=None, last_payment_error={
        "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds."})
    parsed = _parse(webhooks, event("payment_intent.payment_failed", intent))
    assert parsed.type == "payment_intent.payment_failed"
    assert parsed.payment == PaymentResult("declined", payment_id="pi_1", customer_ref="cus_1", amount=4900,
                                           currency="EUR", attempt_id="cs_1",
                                           message="Your card has insufficient funds.")


@pytest.mark.unit
def test_setup_intent_webhooks(webhooks):
    setup = {"id": "seti_1", "object": "setup_intent", "customer": "cus_1", "usage": "off_session",
             "client_secret": "seti_1_secret_x",
             "metadata": {"postsale_checkout_session": "cs_trial", "postsale_currency": "EUR"}}
    succeeded = _parse(webhooks, event("setup_intent.succeeded", {
        **setup, "status": "succeeded", "payment_method": "pm_saved", "last_setup_error": None}))
    assert succeeded.payment == PaymentResult("succeeded", payment_id="seti_1", payment_method_id="pm_saved",
                                              customer_ref="cus_1", amount=0, currency="EUR", attempt_id="cs_trial")
    failed = _parse(webhooks, event("setup_intent.setup_failed", {
        **setup, "status": "requires_payment_method", "payment_method": None,
        "last_setup_error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}))
    assert failed.payment == PaymentResult("declined", payment_id="seti_1", customer_ref="cus_1", amount=0,
                                           currency="EUR", attempt_id="cs_trial", message="Your card was declined.")


@pytest.mark.unit
def test_other_events_carry_no_payment(webhooks):
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    assert _parse(webhooks, payload) == WebhookEvent(json.loads(payload)["id"], "customer.created")


@pytest.mark.unit
def test_a_refund_made_in_stripes_dashboard_arrives_as_charge_refunded(webhooks):
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 4900, "currency": "eur",
              "amount_refunded": 1500, "refunds": {"data": [{"id": "re_1", "amount": 1500}]}}
    parsed = _parse(webhooks, event("charge.refunded", charge))
    assert parsed.refunds == (ProviderRefund("re_1", "pi_1", 1500, "EUR"),) and parsed.payment is None
    without_list = _parse(webhooks, event("charge.refunded", {**charge, "refunds": None}))
    assert without_list.refunds == (ProviderRefund("ch_1:1500", "pi_1", 1500, "EUR"),)


@pytest.mark.unit
def test_disputes_arrive_opened_and_closed(webhooks):
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": "pi_1", "amount": 4900, "currency": "eur",
               "reason": "fraudulent", "status": "needs_response"}
    opened = _parse(webhooks, event("charge.dispute.created", dispute)).dispute
    assert opened == ProviderDispute("dp_1", "pi_1", 4900, "EUR", "open", "fraudulent")
    assert _parse(webhooks, event("charge.dispute.closed", {**dispute, "status": "lost"})).dispute.status == "lost"
    assert _parse(webhooks, event("charge.dispute.closed", {**dispute, "status": "won"})).dispute.status == "won"


@pytest.mark.unit
def test_the_signature_header_is_found_in_any_case(webhooks):
    payload = event("payment_intent.succeeded", payment_intent("succeeded"))
    assert webhooks.parse_webhook(payload, {"stripe-signature": sign(payload)}).payment.succeeded


@pytest.mark.unit
def test_a_webhook_signed_by_the_library_is_accepted(webhooks):
    payload = event("payment_intent.succeeded", payment_intent("succeeded"))
    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), WEBHOOK_SECRET)
    assert webhooks.parse_webhook(payload, {"Stripe-Signature": header}).payment.succeeded


@pytest.mark.unit
@pytest.mark.parametrize("forge", [
    pytest.param(lambda payload: {}, id="missing"),
    pytest.param(lambda payload: {"Stripe-Signature": ""}, id="empty"),
    pytest.param(lambda payload: {"Stripe-Signature": "t=1,v1=00"}, id="garbage"),
    pytest.param(lambda payload: {"Stripe-Signature": "not a signature"}, id="malformed"),
    pytest.param(lambda payload: {"Stripe-Signature": sign(payload, "whsec_not_the_secret")}, id="other-secret"),
    pytest.param(lambda payload: {"Stripe-Signature": sign(payload + b" ")}, id="other-body"),
    pytest.param(lambda payload: {"Stripe-Signature": sign(payload, timestamp=int(time.time()) - 600)}, id="replayed"),
    pytest.param(lambda payload: {"Stripe-Signature": sign(payload).replace("v1=", "v0=")}, id="other-scheme"),
])
def test_a_webhook_not_signed_by_stripe_is_refused(webhooks, forge):
    payload = event("payment_intent.succeeded", payment_intent("succeeded"))
    with pytest.raises(ValueError):
        webhooks.parse_webhook(payload, forge(payload))


@pytest.mark.unit
def test_a_signed_body_that_is_not_an_event_is_refused(webhooks):
    for payload in (b'{"object": "payment_intent", "id": "pi_1"}', b"[]", b"not json"):
        with pytest.raises(ValueError):
            webhooks.parse_webhook(payload, {"Stripe-Signature": sign(payload)})
