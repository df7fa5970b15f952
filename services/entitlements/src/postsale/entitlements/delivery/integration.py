"""`integration`: access lives on a third-party platform; entitlements tells its endpoint.

On grant and on revoke, entitlements POSTs a JSON body to the product's endpoint, signed with the
Standard Webhooks scheme (https://www.standardwebhooks.com): headers `webhook-id` (the delivery's
id, the same on every retry), `webhook-timestamp` (the attempt's Unix seconds) and
`webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `<id>.<timestamp>.<body>`, keyed with the
base64-decoded part of the product's `whsec_` secret). A 2xx answer delivers it; 410 Gone stops
for good; anything else (or no answer within the timeout) is retried on `RETRY_SCHEDULE` for up to
three days, honouring a Retry-After. Every failed attempt is published as `IntegrationCallFailed`
(the last with no `next_retry_at`).

The endpoint is a URL the seller typed, called from inside their network: it must be https to a
public address (`postsale.runtime.targets`), checked when it is saved and resolved again before
each attempt, which connects to the address it checked. Private and loopback targets (and plain
http to this machine) are allowed only with `ENTITLEMENTS_INTEGRATION_PRIVATE_TARGETS=true`, which
development and the tests set.

The platform converges to the newest state of the customer's product: a revoke is not sent while
another grant still gives the product (it is recorded as skipped when the change is made, and
checked again before sending), and a call that is sent supersedes any older one still waiting.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, ValidationError, field_validator

from postsale.contracts import IntegrationCallFailed
from postsale.entitlements.adapters.tables import Delivery, Grant
from postsale.entitlements.config import SERVICE, DeliverySettings
from postsale.entitlements.delivery.base import (STILL_GIVEN, BaseStrategy, DeliveryContext, DeliveryFailed, Result,
                                                 RetryLater, product_settings, still_given)
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging import publish_later
from postsale.runtime.standard_webhooks import SECRET_PREFIX, new_secret, sign
from postsale.runtime import targets
from postsale.runtime.standard_webhooks import secret_key as _key
from postsale.runtime.settings import from_environment

SOURCE = f"/postsale/{SERVICE}"
USER_AGENT = "Postsale-Entitlements/1 (+https://www.standardwebhooks.com)"
PRIVATE_TARGETS = "ENTITLEMENTS_INTEGRATION_PRIVATE_TARGETS"


def private_targets_allowed(settings: DeliverySettings | None = None) -> bool:
    """Whether an endpoint may be private or loopback: only when the setting is true. Read from the
    process's environment when no settings are given (where a product's settings are saved, by the
    back office or the JSON admin API)."""
    settings = settings if settings is not None else from_environment(DeliverySettings)
    return settings.integration_private_targets is True


class IntegrationSettings(BaseModel):
    endpoint_url: str | None = Field(default=None, max_length=2000,
                                     description="Where grants and revokes are sent: https to a public address "
                                                 "(private ones and plain http to this machine only when "
                                                 f"{PRIVATE_TARGETS}=true).")
    secret: str | None = Field(default=None, max_length=200,
                               description="The Standard Webhooks signing secret (`whsec_` and base64 of 24 to 64 "
                                           "random bytes); made for you when left out.")
    access_url: str | None = Field(default=None, max_length=2000,
                                   description="Where the customer uses what they bought; the library links to it.")

    @field_validator("endpoint_url", "access_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        """The shape of a URL only: stored settings are read through this model too, so where the
        endpoint may point is checked when it is saved (`configure`) and before each call."""
        if value is None:
            return None
        parts = urlsplit(value)
        if "\x00" in value or any(c.isspace() for c in value):
            raise ValueError("must be an http or https URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = _key(value) if value.startswith(SECRET_PREFIX) else b""
        except ValueError:
            key = b""
        if not 24 <= len(key) <= 64:
            raise ValueError("must be `whsec_` followed by 24 to 64 bytes in base64")
        return value


def payload(ctx: DeliveryContext, delivery: Delivery) -> str:
    """The body of every attempt of this delivery (compact JSON; signed as sent)."""
    grant = ctx.session.get(Grant, delivery.grant_id)
    product = ctx.product(delivery)
    body = {
        "type": "access.granted" if delivery.action == "grant" else "access.revoked",
        "timestamp": as_utc(delivery.created_at).isoformat(),  # type: ignore[union-attr]
        "data": {
            "action": delivery.action,
            "change": delivery.ledger_action,
            "reason": delivery.reason,
            "customer_id": delivery.customer_id,
            "email": delivery.email,
            "product_id": delivery.product_id,
            "product_name": product.name if product else (grant.product_name if grant else ""),
            "grant_id": delivery.grant_id,
            "purchase_id": delivery.purchase_id,
            "expires_at": as_utc(grant.expires_at).isoformat() if grant and grant.expires_at else None,
        },
    }
    return json.dumps(body, separators=(",", ":"))


def _retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    try:
        return parsedate_to_datetime(value) - now
    except (TypeError, ValueError):
        return None


class IntegrationStrategy(BaseStrategy):
    delivery_type = "integration"
    runs_inline = False
    one_per_product = True
    settings_model = IntegrationSettings

    def configure(self, settings: BaseModel) -> BaseModel:
        """Refuses an endpoint that may not be called (a private address, plain http to another
        machine) as the settings' ValidationError; makes a signing secret when none is given."""
        assert isinstance(settings, IntegrationSettings)
        if settings.endpoint_url is not None:
            try:
                targets.check_url(settings.endpoint_url, private_allowed=private_targets_allowed(),
                                  setting=PRIVATE_TARGETS)
            except targets.TargetRefused as refused:
                raise ValidationError.from_exception_data("IntegrationSettings", [{
                    "type": "value_error", "loc": ("endpoint_url",), "input": settings.endpoint_url,
                    "ctx": {"error": ValueError(str(refused))}}]) from None
        return settings if settings.secret else settings.model_copy(update={"secret": new_secret()})

    def prepare(self, ctx: DeliveryContext, delivery: Delivery) -> None:
        if delivery.payload is None:
            delivery.payload = payload(ctx, delivery)
            ctx.session.add(delivery)

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        return self._call(ctx, delivery)

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        if still_given(ctx.session, delivery.customer_id, delivery.product_id, delivery.grant_id, ctx.now):
            return Result("skipped", STILL_GIVEN)
        return self._call(ctx, delivery)

    def _call(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        settings = product_settings(ctx.product(delivery), IntegrationSettings)
        if not settings.endpoint_url or not settings.secret:
            raise RetryLater("no endpoint is set for this product")
        if ctx.http is None:
            raise RetryLater("no HTTP client here: the scheduler sends it")
        try:  # resolved again at each attempt, and called at the address checked
            address = targets.check_resolved(settings.endpoint_url, setting=PRIVATE_TARGETS,
                                             private_allowed=private_targets_allowed(ctx.settings))
        except targets.TargetRefused as refused:
            raise RetryLater(f"not sent: the endpoint URL {refused}") from None
        url, host, extensions = targets.pinned(settings.endpoint_url, address)
        body = (delivery.payload or payload(ctx, delivery)).encode()
        timestamp = int(ctx.now.timestamp())
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": delivery.id,
                   "webhook-timestamp": str(timestamp), **host,
                   "webhook-signature": sign(settings.secret, delivery.id, timestamp, body)}
        try:
            response = ctx.http.post(url, content=body, headers=headers, extensions=extensions,
                                     timeout=ctx.settings.integration_timeout_seconds, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise RetryLater(f"no answer: {type(exc).__name__}: {exc}") from exc
        code = response.status_code
        if 200 <= code < 300:
            return Result("done", f"answered {code}", status_code=code)
        excerpt = response.text[:200].strip()
        said = f"answered {code}" + (f": {excerpt}" if excerpt else "")
        if code == 410:
            raise DeliveryFailed(said + " (the endpoint wants no more calls)", status_code=code)
        raise RetryLater(said, after=_retry_after(response, ctx.now), status_code=code)

    def failed_attempt(self, ctx: DeliveryContext, delivery: Delivery, error: str,
                       next_attempt_at: datetime | None) -> None:
        settings = product_settings(ctx.product(delivery), IntegrationSettings)
        platform = urlsplit(settings.endpoint_url).hostname if settings.endpoint_url else None
        publish_later(ctx.session, IntegrationCallFailed(
            call_id=delivery.id, platform=platform or "not configured", action=delivery.action,  # type: ignore[arg-type]
            customer_id=delivery.customer_id, email=delivery.email, product_id=delivery.product_id,
            purchase_id=delivery.purchase_id, attempt=delivery.attempts, next_retry_at=next_attempt_at,
            error=error or "failed", failed_at=ctx.now,
        ), source=SOURCE)
