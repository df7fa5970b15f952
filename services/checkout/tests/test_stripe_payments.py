"""The Stripe adapter of the payment port against stripe-mock: start_payment, payment_result, charge_saved
and refund.

stripe-mock validates every request against Stripe's OpenAPI specification (an unknown or
malformed parameter is a 400) but keeps no state: it answers from fixtures, echoing some of
the parameters, and ignores idempotency keys. So these tests record what the adapter sends (a
recording HTTP client in front of the real one) and check how it reads what comes back.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from stripe_support import API_KEY, WEBHOOK_SECRET, payment_intent

from postsale.checkout.adapters.payments.port import PaymentError, PaymentResult
from postsale.checkout.adapters.payments.stripe import (
    CANCELED, DECLINED, NOT_FOUND, REFUSED, UNREACHABLE, StripeProvider, result_of_intent)


class RecordingClient(stripe.RequestsClient):
    """Stripe's own HTTP client, keeping each request it sends: (method, path, query or form, headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[tuple[str, str, dict[str, str], dict[str, str]]] = []

    def request(self, method, url, headers, post_data=None):
        parts = urlsplit(url)
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        params = dict(parse_qsl(body or parts.query))
        self.recorded.append((method.upper(), parts.path, params, dict(headers or {})))
        return super().request(method, url, headers, post_data)

    def sent(self, method: str, path: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        return [(params, headers) for m, p, params, headers in self.recorded if (m, p) == (method, path)]


@pytest.fixture
def recorder() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def provider(stripe_mock, recorder) -> StripeProvider:
    return StripeProvider(API_KEY, stripe_mock.api_base, WEBHOOK_SECRET, http_client=recorder)


# --- start_payment -------------------------------------------------------------------------------


@pytest.mark.integration
def test_start_payment_makes_a_payment_intent_that_saves_the_card_for_a_customer(provider, recorder):
    attempt = f"cs_{uuid.uuid4().hex}"
    result = provider.start_payment(attempt_id=attempt, amount=4900, currency="eur", email=" Ann@Example.com ",
                                    idempotency_key=f"attempt:{attempt}", details={})

    assert result.status == "requires_action"  # the browser confirms it with Stripe.js
    assert result.payment_id.startswith("pi_")
    assert result.client_secret and "_secret_" in result.client_secret
    assert (result.amount, result.currency, result.attempt_id) == (4900, "EUR", attempt)
    assert result.customer_ref.startswith("cus_")

    # The customer is looked up by the (normalised) email first; stripe-mock always finds one.
    [(lookup, _)] = recorder.sent("GET", "/v1/customers")
    assert lookup == {"email": "ann@example.com", "limit": "1"}
    [(params, headers)] = recorder.sent("POST", "/v1/payment_intents")
    assert params == {
        "amount": "4900", "currency": "eur", "customer": result.customer_ref, "setup_future_usage": "off_session",
        "automatic_payment_methods[enabled]": "true", "metadata[postsale_checkout_session]": attempt,
    }
    assert headers["Idempotency-Key"] == f"attempt:{attempt}"
    assert not recorder.sent("POST", "/v1/setup_intents")


@pytest.mark.integration
def test_start_payment_of_nothing_makes_a_setup_intent_for_off_session_use(provider, recorder):
    attempt = f"cs_{uuid.uuid4().hex}"
    result = provider.start_payment(attempt_id=attempt, amount=0, currency="usd", email="trial@example.com",
                                    idempotency_key=f"attempt:{attempt}", details={})

    assert result.status == "requires_action"
    assert result.payment_id.startswith("seti_")
    assert result.client_secret and result.client_secret.startswith("seti_")
    assert (result.amount, result.currency, result.attempt_id) == (0, "USD", attempt)
    assert result.customer_ref.startswith("cus_")
    [(params, headers)] = recorder.sent("POST", "/v1/setup_intents")
    assert params == {"customer": result.customer_ref, "usage": "off_session",
                      "automatic_payment_methods[enabled]": "true", "metadata[postsale_checkout_session]": attempt,
                      "metadata[postsale_currency]": "USD"}
    assert headers["Idempotency-Key"] == f"attempt:{attempt}"
    assert not recorder.sent("POST", "/v1/payment_intents")


@pytest.mark.integration
def test_the_same_attempt_sends_the_same_idempotency_key(provider, recorder):
    # stripe-mock ignores the key (real Stripe answers a replay with the first PaymentIntent):
    # what can be shown is that a retry sends the same request under the same key.
    for _ in range(2):
        provider.start_payment(attempt_id="cs_twice", amount=1200, currency="EUR", email="b@example.com",
                               idempotency_key="attempt:cs_twice", details={})
    (first, first_headers), (second, second_headers) = recorder.sent("POST", "/v1/payment_intents")
    assert first == second
    assert first_headers["Idempotency-Key"] == second_headers["Idempotency-Key"] == "attempt:cs_twice"


@pytest.mark.integration
def test_stripe_refusing_the_request_is_a_payment_error_in_words_for_the_buyer(stripe_mock):
    # stripe-mock answers 401 to a key that is not a test secret key.
    provider = StripeProvider("not-a-secret-key", stripe_mock.api_base, WEBHOOK_SECRET)
    with pytest.raises(PaymentError) as refused:
        provider.start_payment(attempt_id="cs_1", amount=4900, currency="EUR", email="c@example.com",
                               idempotency_key="attempt:cs_1", details={})
    assert str(refused.value) == REFUSED
    assert isinstance(refused.value.__cause__, stripe.AuthenticationError)


@pytest.mark.integration
def test_stripe_out_of_reach_is_a_payment_error_in_words_for_the_buyer():
    with _closed_port() as port:
        provider = StripeProvider(API_KEY, f"http://127.0.0.1:{port}", WEBHOOK_SECRET)
        with pytest.raises(PaymentError) as unreachable:
            provider.start_payment(attempt_id="cs_1", amount=4900, currency="EUR", email="c@example.com",
                                   idempotency_key="attempt:cs_1", details={})
    assert str(unreachable.value) == UNREACHABLE
    assert isinstance(unreachable.value.__cause__, stripe.APIConnectionError)


# --- payment_result ------------------------------------------------------------------------------


@pytest.mark.integration
def test_payment_result_reads_the_payment_intent(provider, recorder):
    # stripe-mock's PaymentIntent fixture: 1099 usd, requires_payment_method with a last_payment_error
    # (an attempt that failed), whatever id is asked for.
    result = provider.payment_result("pi_3returning")
    assert recorder.sent("GET", "/v1/payment_intents/pi_3returning")
    assert result.status == "declined"
    assert result.message == DECLINED  # the fixture's error carries no message of its own
    assert (result.payment_id, result.amount, result.currency) == ("pi_3returning", 1099, "USD")


@pytest.mark.integration
def test_payment_result_reads_a_setup_intent(provider, recorder):
    result = provider.payment_result("seti_3returning")
    assert recorder.sent("GET", "/v1/setup_intents/seti_3returning")
    assert result.status == "declined"  # the fixture too has a last_setup_error
    # stripe-mock's fixture has no metadata, so no currency either.
    assert (result.payment_id, result.amount, result.currency) == ("seti_3returning", 0, None)


@pytest.mark.integration
def test_payment_result_of_something_not_stripes_asks_nothing(provider, recorder):
    assert provider.payment_result("sbx_0123") == PaymentResult("declined", payment_id="sbx_0123", message=NOT_FOUND)
    assert recorder.recorded == []

@pytest.mark.unit
@pytest.mark.parametrize(("intent", "expected"), [
    (payment_intent("succeeded"),
     PaymentResult("succeeded", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1")),
    (payment_intent("succeeded", payment_method={"id": "pm_expanded", "object": "payment_method"}),
     PaymentResult("succeeded", "pi_1", "pm_expanded", "cus_1", 4900, "EUR", "cs_1")),
    (payment_intent("requires_payment_method", payment_method=None,
             last_payment_error={"type": "card_error", "code": "card_declined", "message": "Your card was declined."}),
     PaymentResult("declined", "pi_1", None, "cus_1", 4900, "EUR", "cs_1", message="Your card was declined.")),
    (payment_intent("requires_payment_method", payment_method=None),  # not confirmed yet: the browser must act
     PaymentResult("requires_action", "pi_1", None, "cus_1", 4900, "EUR", "cs_1", client_secret="pi_1_secret_x")),
    (payment_intent("requires_action", next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}}),
     PaymentResult("requires_action", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1", client_secret="pi_1_secret_x")),
    (payment_intent("requires_action", next_action={
        "type": "redirect_to_url", "redirect_to_url": {"url": "https://hooks.stripe.com/3ds", "return_url": "x"}}),
     PaymentResult("requires_action", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1", client_secret="pi_1_secret_x",
                   action_url="https://hooks.stripe.com/3ds")),
    (payment_intent("requires_confirmation"),
     PaymentResult("requires_action", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1", client_secret="pi_1_secret_x")),
    (payment_intent("processing"),
     PaymentResult("processing", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1")),
    (payment_intent("canceled"),
     PaymentResult("declined", "pi_1", "pm_1", "cus_1", 4900, "EUR", "cs_1", message=CANCELED)),
    ({"id": "seti_1", "object": "setup_intent", "status": "succeeded", "customer": "cus_1", "payment_method": "pm_1",
      "usage": "off_session", "metadata": {"postsale_checkout_session": "cs_1", "postsale_currency": "EUR"},
      "last_setup_error": None},
     PaymentResult("succeeded", "seti_1", "pm_1", "cus_1", 0, "EUR", "cs_1")),
], ids=["succeeded", "expanded-method", "declined", "unconfirmed", "3ds", "3ds-redirect", "requires-confirmation",
        "processing", "canceled", "setup-succeeded"])
def test_intent_statuses_map_to_the_port(intent, expected):
    assert result_of_intent(intent) == expected


# --- charge_saved and refund ---------------------------------------------------------------------


@pytest.mark.integration
def test_charge_saved_confirms_off_session(provider, recorder):
    result = provider.charge_saved(payment_method_id="pm_card_visa", customer_ref="cus_saved", amount=1500,
                                   currency="EUR", attempt_id="cs_upsell", idempotency_key="attempt:cs_upsell:1")
    [(params, headers)] = recorder.sent("POST", "/v1/payment_intents")
    assert params == {
        "amount": "1500", "currency": "eur", "payment_method": "pm_card_visa", "customer": "cus_saved",
        "off_session": "true", "confirm": "true", "automatic_payment_methods[enabled]": "true",
        "automatic_payment_methods[allow_redirects]": "never", "metadata[postsale_checkout_session]": "cs_upsell",
    }
    assert headers["Idempotency-Key"] == "attempt:cs_upsell:1"
    assert result.payment_id.startswith("pi_")
    assert (result.amount, result.currency, result.attempt_id) == (1500, "EUR", "cs_upsell")
    assert (result.payment_method_id, result.customer_ref) == ("pm_card_visa", "cus_saved")
    # stripe-mock never charges: its fixture answers a confirmed intent with a failed attempt
    # (requires_payment_method and a last_payment_error), which the adapter reads as a decline.
    assert result.status == "declined"


@pytest.mark.integration
def test_refund_in_part(provider, recorder):
    refund = provider.refund(payment_id="pi_paid", amount=1000, idempotency_key="refund:1")
    [(params, headers)] = recorder.sent("POST", "/v1/refunds")
    assert params == {"payment_intent": "pi_paid", "amount": "1000"}
    assert headers["Idempotency-Key"] == "refund:1"
    assert refund.refund_id.startswith("re_")
    assert (refund.amount, refund.succeeded) == (1000, True)


@pytest.mark.integration
def test_refund_of_a_setup_intent_asks_nothing(provider, recorder):
    refund = provider.refund(payment_id="seti_trial", amount=100, idempotency_key="refund:2")
    assert not refund.succeeded and refund.message
    assert recorder.recorded == []


class _StripeAnswers(BaseHTTPRequestHandler):
    """Answers as Stripe does to what stripe-mock cannot show: a decline and a refused refund."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/payment_intents":  # Stripe's documented off-session decline
            status, body = 402, {"error": {
                "type": "card_error", "code": "authentication_required", "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
                "payment_intent": {"id": "pi_needs_you", "object": "payment_intent",
                                   "status": "requires_payment_method", "amount": 1500, "currency": "eur"}}}
        else:
            status, body = 400, {"error": {
                "type": "invalid_request_error", "code": "amount_too_large", "param": "amount",
                "message": "Refund amount (€100.00) is greater than unrefunded amount on charge (€49.00)"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stripe_answers() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StripeAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_an_off_session_decline_is_a_declined_result(stripe_answers):
    provider = StripeProvider(API_KEY, stripe_answers, WEBHOOK_SECRET)
    result = provider.charge_saved(payment_method_id="pm_1", customer_ref="cus_1", amount=1500, currency="EUR",
                                   attempt_id="cs_upsell", idempotency_key="attempt:cs_upsell:1")
    assert result == PaymentResult("declined", payment_id="pi_needs_you", payment_method_id="pm_1",
                                   customer_ref="cus_1", amount=1500, currency="EUR", attempt_id="cs_upsell",
                                   message="Your card was declined. This transaction requires authentication.")


@pytest.mark.integration
def test_a_refund_stripe_refuses_is_an_unsuccessful_refund(stripe_answers):
    provider = StripeProvider(API_KEY, stripe_answers, WEBHOOK_SECRET)
    refund = provider.refund(payment_id="pi_paid", amount=10000, idempotency_key="refund:3")
    assert not refund.succeeded
    assert refund.amount == 0
    assert "greater than unrefunded amount" in refund.message


# --- helpers -------------------------------------------------------------------------------------


class _closed_port:
    """A loopback port nothing listens on, for as long as the block runs."""

    def __enter__(self) -> int:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        return self._socket.getsockname()[1]

    def __exit__(self, *exc_info) -> None:
        self._socket.close()
