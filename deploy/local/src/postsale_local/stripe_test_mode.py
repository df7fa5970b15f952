"""stripe-mock with the outcomes Stripe's test mode documents for its test payment methods.

stripe-mock answers every request from fixtures and keeps no state: an intent it creates is
never `succeeded`, so an off-session charge (an upsell, a renewal) always looks declined. This
proxy sits in front of it and changes only what test mode would answer differently, leaving the
rest (validation against Stripe's specification, ids, shapes) to stripe-mock:

- a PaymentIntent created with `confirm=true` and `off_session=true` succeeds, with the amount,
  currency, customer, payment method and metadata it was created with; with
  `pm_card_chargeCustomerFail` (the saved card 4000 0000 0000 0341) it fails with Stripe's 402
  `card_declined` error;
- an intent confirmed through the proxy (`POST /v1/{payment,setup}_intents/{id}/confirm`, what
  Stripe.js does in the buyer's browser) reads back as `succeeded` with that payment method.

Tests confirm intents here as the browser would, then sign the webhook Stripe would send.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx

from postsale_local.processes import free_port

FAILS_WHEN_CHARGED = "pm_card_chargeCustomerFail"
DECLINED = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
            "message": "Your card was declined."}


class StripeTestMode:
    def __init__(self, stripe_mock_base: str) -> None:
        self.upstream = stripe_mock_base.rstrip("/")
        self.port = free_port()
        self.created: dict[str, dict[str, str]] = {}  # intent id -> the parameters it was created with
        self.confirmed: dict[str, str] = {}  # intent id -> the payment method it was confirmed with
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def confirm(self, intent_id: str, payment_method: str = "pm_card_visa") -> None:
        """What Stripe.js does in the buyer's browser: confirms the intent with a card."""
        kind = "setup_intents" if intent_id.startswith("seti_") else "payment_intents"
        answer = httpx.post(f"{self.api_base}/v1/{kind}/{intent_id}/confirm", data={"payment_method": payment_method},
                            headers={"Authorization": "Bearer sk_test_postsale"})
        answer.raise_for_status()

    def intent(self, intent_id: str) -> dict:
        """The intent as Stripe would send it in a webhook (after `confirm`: succeeded)."""
        kind = "setup_intents" if intent_id.startswith("seti_") else "payment_intents"
        answer = httpx.get(f"{self.api_base}/v1/{kind}/{intent_id}", headers={"Authorization": "Bearer sk_test_postsale"})
        answer.raise_for_status()
        return answer.json()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StripeTestMode":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True)) if body else {}
        upstream = httpx.request(method, self.upstream + path, content=body, headers=headers, timeout=10)
        if upstream.status_code >= 400 or "json" not in upstream.headers.get("content-type", ""):
            return upstream.status_code, upstream.content
        data = upstream.json()
        parts = path.split("?")[0].strip("/").split("/")  # v1, <kind>, [<id>, [confirm]]
        if len(parts) < 2 or parts[1] not in ("payment_intents", "setup_intents"):
            return upstream.status_code, upstream.content
        with self._lock:
            if method == "POST" and len(parts) == 2:
                self.created[data["id"]] = params
                if params.get("confirm") == "true" and params.get("off_session") == "true":
                    if params.get("payment_method") == FAILS_WHEN_CHARGED:
                        error = {**DECLINED, "payment_intent": {**data, "status": "requires_payment_method"}}
                        return 402, json.dumps({"error": error}).encode()
                    self.confirmed[data["id"]] = params.get("payment_method", "")
            elif method == "POST" and len(parts) == 4 and parts[3] == "confirm":
                self.confirmed[parts[2]] = params.get("payment_method", "pm_card_visa")
            intent_id = data.get("id", "")
            if intent_id in self.confirmed:
                data = self._succeeded(data, self.created.get(intent_id, {}), self.confirmed[intent_id])
        return upstream.status_code, json.dumps(data).encode()

    @staticmethod
    def _succeeded(data: dict, created: dict[str, str], payment_method: str) -> dict:
        metadata = {key[len("metadata["):-1]: value for key, value in created.items() if key.startswith("metadata[")}
        data = {**data, "status": "succeeded", "payment_method": payment_method, "metadata": metadata,
                "last_payment_error": None, "last_setup_error": None, "next_action": None}
        if "customer" in created:
            data["customer"] = created["customer"]
        if data.get("object") == "payment_intent":
            data["amount"] = int(created.get("amount", data.get("amount") or 0))
            data["currency"] = created.get("currency", data.get("currency"))
        return data

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in ("host", "content-length", "connection")}
                status, payload = proxy._answer(self.command, self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, *args) -> None:  # quiet: the tests read their own output
                pass

        return Handler
