"""The public license API, for the software a customer bought: validate, activate and deactivate a
key (sent in the body, never in the URL, so it stays out of access logs). No login: the key is the
credential. Every refusal is `{"error": <code>, "message": <words>}` with a fitting status, and the
key's state in `license` when the key exists. Requests are limited per key and per client address
(`ENTITLEMENTS_LICENSE_REQUESTS_PER_KEY` and `..._PER_ADDRESS` a minute, counted in each process)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.delivery import license_key
from postsale.entitlements.domain.licenses import normalize_key
from postsale.entitlements.entrypoints.fields import Id, Text
from postsale.runtime.clock import utcnow
from postsale.runtime.db import SessionDep

router = APIRouter(prefix="/licenses", tags=["licenses"])
WINDOW_SECONDS = 60.0


class RateLimiter:
    """At most `limit` requests per `window` seconds for each name (a sliding window), in memory.
    The oldest names are forgotten past `max_names`, so memory stays bounded."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, max_names: int = 100_000) -> None:
        self.limit, self.window, self.max_names = limit, window, max_names
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, name: str, now: float | None = None) -> float:
        """Counts a request; 0 when it may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(name, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            self._seen[name] = times
            while len(self._seen) > self.max_names:
                self._seen.popitem(last=False)
            if len(times) >= self.limit:
                return times[0] + self.window - now
            times.append(now)
            return 0.0


class LicenseLimits:
    def __init__(self, settings: DeliverySettings) -> None:
        self.per_key = RateLimiter(settings.license_requests_per_key)
        self.per_address = RateLimiter(settings.license_requests_per_address)


def _limits(request: Request) -> LicenseLimits:
    limits = getattr(request.app.state, "license_limits", None)
    if limits is None:
        limits = request.app.state.license_limits = LicenseLimits(DeliverySettings())
    return limits


class LicenseOut(BaseModel):
    key: str
    status: Literal["active", "suspended", "revoked", "expired"] = Field(
        description="`active`: it works; `suspended`: access is on hold (a dispute, a pause); `revoked`: access "
                    "ended (refund, lost dispute, the seller); `expired`: the key's own time is over.")
    valid: bool = Field(description="Whether the key works now (`status` is `active`).")
    product_id: str
    activations: int = Field(description="Activations in use.")
    activation_limit: int | None = Field(description="Empty: no limit.")
    expires_at: datetime | None = Field(description="Empty: the key does not expire by itself.")

    @classmethod
    def of(cls, view: license_key.LicenseView) -> "LicenseOut":
        return cls(key=view.key, status=view.status, valid=view.valid, product_id=view.product_id,
                   activations=view.activations, activation_limit=view.activation_limit, expires_at=view.expires_at)


class Refusal(BaseModel):
    error: str = Field(description="`not_found`, `revoked`, `suspended`, `expired`, `activation_limit_reached`, "
                                   "`activation_not_found`, `wrong_product` or `rate_limited`.")
    message: str
    license: LicenseOut | None = None


class ValidateIn(BaseModel):
    key: Text = Field(min_length=1, max_length=100)
    activation_id: Id | None = Field(default=None, description="Also check that this activation is still on.")
    product_id: Id | None = Field(default=None, description="Also check the key is for this product.")


class ActivateIn(BaseModel):
    key: Text = Field(min_length=1, max_length=100)
    label: Text = Field(min_length=1, max_length=200, description="The device or install, e.g. `Ann's laptop`.")


class DeactivateIn(BaseModel):
    key: Text = Field(min_length=1, max_length=100)
    activation_id: Id


class ActivationOut(BaseModel):
    activation_id: str = Field(description="Keep it: deactivating and validating an activation need it.")
    label: str
    license: LicenseOut


REFUSALS = {404: {"model": Refusal}, 403: {"model": Refusal}, 409: {"model": Refusal}, 422: {"model": Refusal},
            429: {"model": Refusal}}


def _refusal(exc: license_key.LicenseRefused) -> JSONResponse:
    body = Refusal(error=exc.code, message=exc.message,
                   license=LicenseOut.of(exc.license) if exc.license is not None else None)
    return JSONResponse(body.model_dump(mode="json"), status_code=exc.http_status)


def _rate_limited(request: Request, key: str) -> JSONResponse | None:
    limits = _limits(request)
    address = request.client.host if request.client else "unknown"
    wait = max(limits.per_address.wait(f"address:{address}"),
               limits.per_key.wait(f"key:{normalize_key(key) or key.strip()[:100]}"))
    if wait <= 0:
        return None
    body = Refusal(error="rate_limited", message="too many requests for this key or from this address; try again "
                                                 f"in {wait:.0f} seconds")
    return JSONResponse(body.model_dump(mode="json"), status_code=429,
                        headers={"Retry-After": str(max(1, int(wait + 0.999)))})


@router.post("/validate", response_model=LicenseOut, responses=REFUSALS)
def validate(body: ValidateIn, request: Request, session: SessionDep):
    """Whether a key works now: `valid` and its `status`. An unknown key is a 404."""
    if (limited := _rate_limited(request, body.key)) is not None:
        return limited
    try:
        view = license_key.validate(session, body.key, utcnow(), activation_id=body.activation_id,
                                    product_id=body.product_id)
    except license_key.LicenseRefused as exc:
        return _refusal(exc)
    return LicenseOut.of(view)


@router.post("/activate", status_code=201, response_model=ActivationOut, responses=REFUSALS)
def activate(body: ActivateIn, request: Request, session: SessionDep):
    """Activates a working key on one more device or install, up to its limit (409
    `activation_limit_reached` beyond it; 403 when the key does not work). Activating the same
    label again returns the same activation."""
    if (limited := _rate_limited(request, body.key)) is not None:
        return limited
    try:
        activation, view = license_key.activate(session, body.key, body.label.strip() or body.label, utcnow())
    except license_key.LicenseRefused as exc:
        session.rollback()
        return _refusal(exc)
    session.commit()
    return ActivationOut(activation_id=activation.id, label=activation.label, license=LicenseOut.of(view))


@router.post("/deactivate", response_model=LicenseOut, responses=REFUSALS)
def deactivate(body: DeactivateIn, request: Request, session: SessionDep):
    """Frees an activation, so the key can be activated elsewhere (also when the key no longer works)."""
    if (limited := _rate_limited(request, body.key)) is not None:
        return limited
    try:
        view = license_key.deactivate(session, body.key, body.activation_id, utcnow())
    except license_key.LicenseRefused as exc:
        session.rollback()
        return _refusal(exc)
    session.commit()
    return LicenseOut.of(view)
