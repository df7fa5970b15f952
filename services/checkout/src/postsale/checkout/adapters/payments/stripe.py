"""The Stripe provider: PaymentIntents (and SetupIntents for free trials) through the official `stripe` library.

The payment page confirms with Stripe.js (the Payment Element, deferred-intent flow): the
server creates the intent here and hands its client secret to the browser; the result comes
back by `payment_result` (the buyer returning) and by the signed webhook. Saved methods are
charged off-session for upsells and renewals.

The intent's metadata names the purchase attempt (`postsale_checkout_session`). The webhook
result carries the amount and currency as Stripe sent them; checking them against the attempt
is the use case's job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, Mapping

import stripe

from postsale.checkout.adapters.payments.port import (
    PaymentError,
    PaymentResult,
    ProviderDispute,
    ProviderRefund,
    RefundResult,
    SavedCard,
    WebhookEvent,
)

log = logging.getLogger(__name__)

METADATA_KEY = "postsale_checkout_session"
SETUP_CURRENCY_KEY = "postsale_currency"  # a SetupIntent has no currency of its own: the attempt's, in its metadata
WEBHOOK_TYPES = {"payment_intent.succeeded", "payment_intent.payment_failed",
                 "setup_intent.succeeded", "setup_intent.setup_failed"}

DECLINED = "Your payment was declined. Try again or use another payment method."
CANCELED = "This payment was canceled. Please start again."
NOT_FOUND = "This payment does not exist."
AUTHENTICATION_NEEDED = ("Your bank asks you to confirm this payment, which cannot be done without the card form. "
                         "Please pay for it on the payment page.")
UNREACHABLE = "We could not reach our payment provider. Nothing was charged; please try again in a moment."
REFUSED = ("Our payment provider could not take this payment. Nothing was charged; please try again, "
           "or contact the seller if it keeps happening.")


def _id(value: Any) -> str | None:
    """An id whether Stripe sent it as a string or as an expanded object."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id") if isinstance(value, Mapping) else getattr(value, "id", None)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)


def _payment_error(exc: stripe.StripeError, doing: str) -> PaymentError:
    """A Stripe failure that is not a decline, in words for the buyer; the details go to the log."""
    log.warning("stripe: %s failed: %s (http %s, code %s, request %s)", doing, type(exc).__name__,
                exc.http_status, exc.code, exc.request_id, exc_info=exc)
    unreachable = isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError))
    return PaymentError(UNREACHABLE if unreachable else REFUSED)


def _card_error_result(exc: stripe.CardError, *, amount: int, currency: str, attempt_id: str,
                       payment_method_id: str | None = None, customer_ref: str | None = None) -> PaymentResult:
    intent = getattr(exc.error, "payment_intent", None) if exc.error is not None else None
    return PaymentResult("declined", payment_id=_id(intent), payment_method_id=payment_method_id,
                         customer_ref=customer_ref, amount=amount, currency=currency.upper(), attempt_id=attempt_id,
                         message=exc.user_message or DECLINED)


def result_of_intent(intent: Mapping[str, Any]) -> PaymentResult:
    """A PaymentIntent or SetupIntent (as Stripe sends it, a plain mapping) in the port's terms.

    A SetupIntent charges nothing: its result has amount 0, and the attempt's currency that
    `start_payment` put in its metadata (Stripe's SetupIntent has no currency field), else none.
    `requires_payment_method` without a last error is an intent the buyer has not confirmed
    yet (the browser still has to act); with one, the last attempt failed.
    """
    setup = intent.get("object") == "setup_intent"
    error = intent.get("last_setup_error" if setup else "last_payment_error")
    metadata = intent.get("metadata") or {}
    currency = metadata.get(SETUP_CURRENCY_KEY) if setup else intent.get("currency")
    base = PaymentResult(
        "processing", payment_id=intent.get("id"), payment_method_id=_id(intent.get("payment_method")),
        customer_ref=_id(intent.get("customer")), amount=0 if setup else intent.get("amount"),
        currency=str(currency).upper() if currency else None, attempt_id=metadata.get(METADATA_KEY),
    )
    status = intent.get("status")
    if status == "succeeded":
        return dataclasses.replace(base, status="succeeded")
    if status == "canceled":
        return dataclasses.replace(base, status="declined", message=CANCELED)
    if status == "requires_payment_method" and error:
        return dataclasses.replace(base, status="declined", message=error.get("message") or DECLINED)
    if status in ("requires_payment_method", "requires_confirmation", "requires_action"):
        next_action = intent.get("next_action") or {}
        redirect = (next_action.get("redirect_to_url") or {}).get("url") if isinstance(next_action, Mapping) else None
        return dataclasses.replace(base, status="requires_action", client_secret=intent.get("client_secret"),
                                   action_url=redirect)
    # processing, and requires_capture (never asked for: capture is automatic): not done yet.
    return base


def _refunds_of_charge(charge: Mapping[str, Any]) -> tuple[ProviderRefund, ...]:
    """The refunds of a `charge.refunded` event, each named by its refund id (so one made through
    Postsale, whose webhook also arrives, is not counted twice)."""
    payment = _id(charge.get("payment_intent")) or str(charge.get("id"))
    currency = str(charge.get("currency", "")).upper()
    listed = ((charge.get("refunds") or {}).get("data") or []) if isinstance(charge.get("refunds"), Mapping) else []
    refunds = tuple(ProviderRefund(str(r["id"]), payment, int(r.get("amount") or 0), currency)
                    for r in listed if isinstance(r, Mapping) and r.get("id"))
    if refunds:
        return refunds
    # Without the list (newer API versions leave it out), the charge's total refunded so far, named by the charge.
    return (ProviderRefund(f"{charge.get('id')}:{charge.get('amount_refunded')}", payment,
                           int(charge.get("amount_refunded") or 0), currency),)


def _dispute(dispute: Mapping[str, Any]) -> ProviderDispute:
    status = dispute.get("status")
    outcome = "won" if status == "won" else "lost" if status == "lost" else "open"
    return ProviderDispute(str(dispute.get("id")), _id(dispute.get("payment_intent")) or str(dispute.get("charge")),
                           int(dispute.get("amount") or 0), str(dispute.get("currency", "")).upper(), outcome,
                           dispute.get("reason"))


def _signature_header(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "stripe-signature":
            return value
    return None


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None, webhook_secret: str, *,
                 http_client: stripe.HTTPClient | None = None) -> None:
        base = {"api": api_base} if api_base else {}
        # Retried requests keep their idempotency key (ours, or one the library adds).
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=2, http_client=http_client)
        self.webhook_secret = webhook_secret
        # Stripe's test mode moves no money, like the sandbox: the lifecycle simulator may run there.
        self.test_mode = api_key.startswith(("sk_test_", "rk_test_"))

    # The buyer on the payment page.

    def _customer_for(self, email: str) -> str:
        """The Stripe Customer of this email: the existing one, else one made idempotently.

        The creation key derives from the email, so two attempts racing for a new email get the
        same customer (Stripe keeps keys 24 hours; after that the list finds it).
        """
        email = email.strip().lower()
        found = self.client.v1.customers.list(params={"email": email, "limit": 1})
        if found.data:
            return found.data[0].id
        key = "postsale-customer:" + hashlib.sha256(email.encode()).hexdigest()
        return self.client.v1.customers.create(params={"email": email}, options={"idempotency_key": key}).id

    def start_payment(self, *, attempt_id: str, amount: int, currency: str, email: str, idempotency_key: str,
                      details: Mapping[str, str]) -> PaymentResult:
        if amount < 0:
            raise ValueError("a payment cannot have a negative amount")
        metadata = {METADATA_KEY: attempt_id}
        options: Any = {"idempotency_key": idempotency_key}
        try:
            customer = self._customer_for(email)
            if amount == 0:  # a free trial: only save the method
                intent: Any = self.client.v1.setup_intents.create(params={
                    "customer": customer, "usage": "off_session", "automatic_payment_methods": {"enabled": True},
                    "metadata": {**metadata, SETUP_CURRENCY_KEY: currency.upper()},
                }, options=options)
            else:
                intent = self.client.v1.payment_intents.create(params={
                    "amount": amount, "currency": currency.lower(), "customer": customer,
                    "setup_future_usage": "off_session", "automatic_payment_methods": {"enabled": True},
                    "metadata": metadata,
                }, options=options)
        except stripe.CardError as exc:
            return _card_error_result(exc, amount=amount, currency=currency, attempt_id=attempt_id)
        except stripe.StripeError as exc:
            raise _payment_error(exc, "starting a payment") from exc
        # The browser confirms it with Stripe.js, whatever state the intent reports now.
        return PaymentResult("requires_action", payment_id=intent.id, client_secret=intent.client_secret,
                             amount=amount, currency=currency.upper(), attempt_id=attempt_id, customer_ref=customer)

    def payment_result(self, payment_id: str) -> PaymentResult:
        try:
            if payment_id.startswith("seti_"):
                intent: Any = self.client.v1.setup_intents.retrieve(payment_id)
            elif payment_id.startswith("pi_"):
                intent = self.client.v1.payment_intents.retrieve(payment_id)
            else:
                return PaymentResult("declined", payment_id=payment_id, message=NOT_FOUND)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return PaymentResult("declined", payment_id=payment_id, message=NOT_FOUND)
            raise _payment_error(exc, "reading a payment") from exc
        except stripe.StripeError as exc:
            raise _payment_error(exc, "reading a payment") from exc
        return result_of_intent(_plain(intent))

    # Without the buyer.

    def charge_saved(self, *, payment_method_id: str, customer_ref: str | None, amount: int, currency: str,
                     attempt_id: str, idempotency_key: str) -> PaymentResult:
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "payment_method": payment_method_id,
            "off_session": True, "confirm": True,
            # Nobody is there to follow a redirect: only methods that need none.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {METADATA_KEY: attempt_id},
        }
        if customer_ref:
            params["customer"] = customer_ref
        try:
            intent = self.client.v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
        except stripe.CardError as exc:  # declined, or authentication_required
            return _card_error_result(exc, amount=amount, currency=currency, attempt_id=attempt_id,
                                      payment_method_id=payment_method_id, customer_ref=customer_ref)
        except stripe.StripeError as exc:
            raise _payment_error(exc, "charging a saved method") from exc
        result = result_of_intent(_plain(intent))
        if result.status == "requires_action":  # off-session, the buyer cannot authenticate
            result = dataclasses.replace(result, status="declined", message=AUTHENTICATION_NEEDED, client_secret=None,
                                         action_url=None)
        return dataclasses.replace(result, attempt_id=result.attempt_id or attempt_id,
                                   payment_method_id=result.payment_method_id or payment_method_id,
                                   customer_ref=result.customer_ref or customer_ref)

    def refund(self, *, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        if not payment_id.startswith("pi_"):
            return RefundResult("", 0, False, "There is no such paid payment to refund.")
        try:
            refund: Any = self.client.v1.refunds.create(params={"payment_intent": payment_id, "amount": amount},
                                                        options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:  # e.g. more than is left of the payment
            log.info("stripe: refund of %s refused: %s", payment_id, exc.user_message or str(exc))
            return RefundResult("", 0, False, exc.user_message or getattr(exc.error, "message", None) or str(exc))
        except stripe.StripeError as exc:
            raise _payment_error(exc, "refunding") from exc
        if refund.status in ("succeeded", "pending"):
            message = "The refund is on its way." if refund.status == "pending" else None
            return RefundResult(refund.id, refund.amount, True, message)
        reason = getattr(refund, "failure_reason", None)
        return RefundResult(refund.id, refund.amount, False,
                            f"Stripe could not refund the payment ({reason or refund.status}).")

    def saved_card(self, payment_method_id: str) -> SavedCard | None:
        """The PaymentMethod's card (brand, last 4, expiry); None for a method that is no card."""
        try:
            method: Any = self.client.v1.payment_methods.retrieve(payment_method_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise _payment_error(exc, "reading a saved card") from exc
        except stripe.StripeError as exc:
            raise _payment_error(exc, "reading a saved card") from exc
        card = _plain(method).get("card")
        if not isinstance(card, Mapping) or not card.get("exp_month") or not card.get("exp_year"):
            return None
        return SavedCard(card.get("brand"), str(card.get("last4") or "")[-4:].zfill(4), int(card["exp_month"]),
                         int(card["exp_year"]))

    # Stripe telling us.

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """The event in a webhook whose `Stripe-Signature` is valid for the raw body; ValueError otherwise."""
        signature = _signature_header(headers)
        if not signature:
            raise ValueError("missing Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(payload, signature, self.webhook_secret,
                                                  stripe.Webhook.DEFAULT_TOLERANCE)
        except stripe.SignatureVerificationError as exc:
            raise ValueError(f"invalid Stripe signature: {exc.user_message or exc}") from exc
        event = json.loads(payload)
        if not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("id"), str) \
                or not isinstance(event.get("type"), str):
            raise ValueError("the webhook does not carry a Stripe event")
        event_type = event["type"]
        obj = (event.get("data") or {}).get("object")
        if event_type == "charge.refunded" and isinstance(obj, dict):
            return WebhookEvent(event["id"], event_type, refunds=_refunds_of_charge(obj))
        if event_type in ("charge.dispute.created", "charge.dispute.closed") and isinstance(obj, dict):
            return WebhookEvent(event["id"], event_type, dispute=_dispute(obj))
        if event_type not in WEBHOOK_TYPES:
            return WebhookEvent(event["id"], event_type)
        intent = (event.get("data") or {}).get("object")
        if not isinstance(intent, dict):
            raise ValueError(f"{event_type} carries no intent")
        result = dataclasses.replace(result_of_intent(intent), client_secret=None, action_url=None)
        if event_type.endswith(".succeeded"):
            result = dataclasses.replace(result, status="succeeded", message=None)
        else:  # payment_failed, setup_failed
            error = intent.get("last_setup_error" if intent.get("object") == "setup_intent" else "last_payment_error")
            result = dataclasses.replace(result, status="declined",
                                         message=(error or {}).get("message") or result.message or DECLINED)
        return WebhookEvent(event["id"], event_type, payment=result)

    def pending_events(self) -> list[WebhookEvent]:
        return []  # Stripe reports everything by webhook

    def acknowledge(self, event: WebhookEvent) -> None:
        pass
