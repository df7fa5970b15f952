"""The seller's admin API of outgoing webhooks: endpoints, their deliveries, replays."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from sqlmodel import select

from postsale.notifications.config import WebhookSettings
from postsale.notifications.webhooks import deliveries, domain, endpoints, targets
from postsale.notifications.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import SessionDep
from postsale.runtime.web import normalize_email, require_admin

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["webhooks"])
Status = Literal["waiting", "pending", "delivered", "failed"]
MAX_ALERT_EMAILS = 5


def _event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = domain.unknown_event_types(value)
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(sorted(set(unknown))[:5])}; see "
                         "GET /admin/webhook-event-types")
    return list(dict.fromkeys(value))


def _text(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _alert_emails(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    addresses = []
    for raw in value:
        address = normalize_email(_text(raw) or "")
        if address is None:
            raise ValueError(f"{raw[:100]!r} is not an email address")
        if address not in addresses:
            addresses.append(address)
    return addresses


URL = Field(max_length=targets.MAX_URL_LENGTH, description="Where events are POSTed: https (plain http only to this "
            "machine, in development); never a private address unless NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS=true.")
EVENT_TYPES = Field(min_length=1, max_length=len(domain.EVENT_TYPES),
                    description="The event types sent to it (`GET /admin/webhook-event-types`).")
ALERT_EMAILS = Field(max_length=MAX_ALERT_EMAILS, description="Told when the endpoint is disabled, besides the "
                                                              "seller's addresses.")
EventType = Annotated[str, Field(max_length=100)]
Address = Annotated[str, Field(max_length=254)]


class EndpointIn(BaseModel):
    url: str = URL
    event_types: list[EventType] = EVENT_TYPES
    description: str = Field(default="", max_length=500)
    alert_emails: list[Address] = Field(default_factory=list, max_length=MAX_ALERT_EMAILS,
                                        description=ALERT_EMAILS.description)

    _types = field_validator("event_types")(_event_types)
    _emails = field_validator("alert_emails")(_alert_emails)
    _description = field_validator("description")(_text)


class EndpointChanges(BaseModel):
    """Only the fields given change."""

    url: str | None = Field(default=None, max_length=targets.MAX_URL_LENGTH, description=URL.description)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=len(domain.EVENT_TYPES),
                                                description=EVENT_TYPES.description)
    description: str | None = Field(default=None, max_length=500)
    alert_emails: list[Address] | None = Field(default=None, max_length=MAX_ALERT_EMAILS,
                                               description=ALERT_EMAILS.description)
    enabled: bool | None = Field(default=None, description="false stops deliveries (what was not delivered becomes "
                                                           "dead letters); true starts a disabled endpoint again.")

    _types = field_validator("event_types")(_event_types)
    _emails = field_validator("alert_emails")(_alert_emails)
    _description = field_validator("description")(_text)


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    alert_emails: list[str]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None = Field(description="The first failed attempt since the last success.")
    last_success_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The Standard Webhooks signing secret (`whsec_...`) to verify deliveries with.")


class AttemptOut(BaseModel):
    number: int
    attempted_at: datetime
    succeeded: bool
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(description="The start of the answer's body (at most 1000 characters).")
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The `webhook-id` of every attempt.")
    endpoint_id: str
    event_id: str
    event_type: str
    ordering_key: str
    status: Status
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    payload: dict = Field(description="The JSON body each attempt sends.")
    recent_attempts: list[AttemptOut] = Field(description="The latest attempts (at most 20), oldest first.")


class ReplayedOut(BaseModel):
    replayed: int


class EventTypeOut(BaseModel):
    type: str
    topic: str
    description: str


def _endpoint_out(endpoint: WebhookEndpoint, model: type[EndpointOut] = EndpointOut) -> EndpointOut:
    out = model.model_validate(endpoint, from_attributes=True)
    for name in ("disabled_at", "failing_since", "last_success_at", "created_at", "updated_at"):
        setattr(out, name, as_utc(getattr(out, name)))
    return out


def _delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id, endpoint_id=delivery.endpoint_id, event_id=delivery.event_id, event_type=delivery.event_type,
        ordering_key=delivery.ordering_key, status=delivery.status, attempts=delivery.attempts,  # type: ignore[arg-type]
        created_at=as_utc(delivery.created_at), next_attempt_at=as_utc(delivery.next_attempt_at),  # type: ignore[arg-type]
        finished_at=as_utc(delivery.finished_at), last_status_code=delivery.last_status_code,
        last_error=delivery.last_error, payload=json.loads(delivery.payload),
        recent_attempts=[AttemptOut(number=a.number, attempted_at=as_utc(a.attempted_at),  # type: ignore[arg-type]
                                    succeeded=a.succeeded, status_code=a.status_code, latency_ms=a.latency_ms,
                                    response_excerpt=a.response_excerpt, error=a.error) for a in attempts])


def _checked_url(request: Request, url: str) -> str:
    settings: WebhookSettings = request.app.state.webhook_settings
    allowed = targets.private_allowed(settings.private_targets)
    try:
        return targets.check_url(url, private_allowed=allowed)
    except targets.TargetRefused as exc:
        raise HTTPException(status_code=422, detail=f"url: {exc}") from exc


def _endpoint(session, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    # An id with a NUL names nothing (and PostgreSQL refuses to look it up).
    endpoint = None if "\x00" in endpoint_id else session.get(WebhookEndpoint, endpoint_id[:64], with_for_update=lock)
    if endpoint is None:
        raise HTTPException(status_code=404, detail=f"no webhook endpoint {endpoint_id[:64]}")
    return endpoint


@admin.get("/webhook-event-types", response_model=list[EventTypeOut])
def event_types() -> list[EventTypeOut]:
    """The event types an endpoint can subscribe to (those of restricted topics are never sent)."""
    return [EventTypeOut(type=name, topic=event.topic, description=" ".join((event.__doc__ or "").split()))
            for name, event in domain.EVENT_TYPES.items()]


@admin.post("/webhook-endpoints", response_model=EndpointWithSecret, status_code=201)
def create_endpoint(body: EndpointIn, request: Request, session: SessionDep) -> EndpointOut:
    """Registers an endpoint; the answer carries its signing secret."""
    url = _checked_url(request, body.url)
    try:
        endpoint = endpoints.create(session, url=url, event_types=body.event_types, description=body.description,
                                    alert_emails=body.alert_emails, now=utcnow())
    except endpoints.Refused as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    session.commit()
    return _endpoint_out(endpoint, EndpointWithSecret)


@admin.get("/webhook-endpoints", response_model=list[EndpointOut])
def list_endpoints(session: SessionDep) -> list[EndpointOut]:
    return [_endpoint_out(e) for e in session.exec(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)).all()]


@admin.get("/webhook-endpoints/{endpoint_id}", response_model=EndpointWithSecret)
def get_endpoint(endpoint_id: str, session: SessionDep) -> EndpointOut:
    return _endpoint_out(_endpoint(session, endpoint_id), EndpointWithSecret)


@admin.patch("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
def change_endpoint(endpoint_id: str, body: EndpointChanges, request: Request, session: SessionDep) -> EndpointOut:
    """Changes the given fields; `enabled: true` starts a disabled endpoint again."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in changes:
        changes["url"] = _checked_url(request, changes["url"])
    endpoint = _endpoint(session, endpoint_id, lock=True)
    try:
        endpoints.change(session, endpoint, changes, utcnow())
    except endpoints.Refused as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    session.commit()
    return _endpoint_out(endpoint)


@admin.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
def rotate_secret(endpoint_id: str, session: SessionDep) -> EndpointOut:
    """A new signing secret, used from the next attempt on."""
    endpoint = endpoints.rotate_secret(session, _endpoint(session, endpoint_id, lock=True), utcnow())
    session.commit()
    return _endpoint_out(endpoint, EndpointWithSecret)


@admin.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: str, session: SessionDep) -> Response:
    """Removes the endpoint with its deliveries."""
    # Not locked: an attempt running now locks the endpoint when it ends, and it must be able to.
    endpoints.remove(session, _endpoint(session, endpoint_id))
    session.commit()
    return Response(status_code=204)


@admin.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(endpoint_id: str, session: SessionDep, status: Status | None = None,
                    before: Annotated[str | None, Query(max_length=64, description="A delivery id: older ones.")] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[DeliveryOut]:
    """The endpoint's deliveries, newest first, with their latest attempts; `status=failed`: its
    dead letters."""
    _endpoint(session, endpoint_id)
    if before is not None and "\x00" in before:
        raise HTTPException(status_code=422, detail="before: must not contain a NUL character")
    try:
        found = endpoints.deliveries_of(session, endpoint_id[:64], status=status, before=before, limit=limit)
    except endpoints.Refused as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return [_delivery_out(d, attempts) for d, attempts in found]


@admin.post("/webhook-endpoints/{endpoint_id}/replay-failed", response_model=ReplayedOut, status_code=202)
def replay_failed(endpoint_id: str, session: SessionDep) -> ReplayedOut:
    """Sends the endpoint's dead letters again, in their order per key: the oldest 1000 per call
    (`replayed` says how many; call again while it is 1000)."""
    _endpoint(session, endpoint_id)
    try:
        replayed = deliveries.replay_failed(session, endpoint_id[:64], utcnow())
    except deliveries.Conflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return ReplayedOut(replayed=replayed)


@admin.post("/webhook-deliveries/{delivery_id}/replay", response_model=DeliveryOut, status_code=202)
def replay_delivery(delivery_id: str, session: SessionDep) -> DeliveryOut:
    """Sends a dead letter again, with the same `webhook-id` and a fresh three days of retries."""
    delivery = None if "\x00" in delivery_id else session.exec(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id[:64])).first()
    if delivery is None:
        raise HTTPException(status_code=404, detail=f"no webhook delivery {delivery_id[:64]}")
    try:
        deliveries.replay(session, delivery, utcnow())
    except deliveries.Conflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return _delivery_out(delivery, [])
