"""The seller's webhook endpoints: registered, changed, re-enabled, removed, and what was sent to
each. Each use case runs inside the caller's transaction and never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, select

from postsale.notifications.emails import seller_addresses
from postsale.notifications.webhooks import deliveries
from postsale.notifications.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSend
from postsale.runtime.standard_webhooks import new_secret

MAX_ENDPOINTS = 50
ATTEMPTS_SHOWN = 20


class Refused(ValueError):
    """What the seller asked cannot be done, in words for the seller."""


def create(session: Session, *, url: str, event_types: list[str], description: str, alert_emails: list[str],
           now: datetime) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret. Refused beyond `MAX_ENDPOINTS`, and when nobody
    would be told that it was disabled."""
    count = session.exec(select(func.count()).select_from(WebhookEndpoint)).one()
    if count >= MAX_ENDPOINTS:
        raise Refused(f"a store has at most {MAX_ENDPOINTS} webhook endpoints")
    _someone_is_told(session, alert_emails)
    endpoint = WebhookEndpoint(id=f"we_{uuid.uuid4().hex[:24]}", url=url, description=description,
                               event_types=event_types, secret=new_secret(), alert_emails=alert_emails,
                               created_at=now, updated_at=now)
    session.add(endpoint)
    return endpoint


def change(session: Session, endpoint: WebhookEndpoint, changes: dict, now: datetime) -> WebhookEndpoint:
    """Applies the given fields (`url`, `event_types`, `description`, `alert_emails`, `enabled`).
    Enabling a disabled endpoint starts it afresh; disabling one turns what it had not received
    into dead letters, which the seller can replay once it is enabled again."""
    if "alert_emails" in changes:
        _someone_is_told(session, changes["alert_emails"])
    for name in ("url", "event_types", "description", "alert_emails"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    enabled = changes.get("enabled")
    if enabled is True and not endpoint.enabled:
        endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = True, None, None
        endpoint.failing_since = None
    elif enabled is False and endpoint.enabled:
        endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, now, "disabled by the seller"
        deliveries.stop_unfinished(session, endpoint.id, now, "the endpoint was disabled by the seller")
    endpoint.updated_at = now
    session.add(endpoint)
    return endpoint


def rotate_secret(session: Session, endpoint: WebhookEndpoint, now: datetime) -> WebhookEndpoint:
    """A new signing secret; the old one signs nothing from now on."""
    endpoint.secret, endpoint.updated_at = new_secret(), now
    session.add(endpoint)
    return endpoint


def remove(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and everything sent to it."""
    delivery_ids = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    # Attempts scheduled first: one running now is waited for, and its record is removed after it.
    session.execute(delete(WebhookSend).where(WebhookSend.endpoint_id == endpoint.id))  # type: ignore[arg-type]
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)))  # type: ignore[attr-defined]
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))  # type: ignore[arg-type]
    session.delete(endpoint)


def deliveries_of(session: Session, endpoint_id: str, *, status: str | None, before: str | None,
                  limit: int) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The endpoint's deliveries, newest first (older than the delivery `before`, when given), each
    with its latest attempts in order."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        cursor = session.exec(select(WebhookDelivery.seq).where(WebhookDelivery.id == before)).first()
        if cursor is None:
            raise Refused(f"no delivery {before}")
        query = query.where(WebhookDelivery.seq < cursor)
    found = session.exec(query.order_by(WebhookDelivery.seq.desc()).limit(limit)).all()  # type: ignore[union-attr]
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in found}
    if attempts:
        for row in session.exec(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))  # type: ignore[attr-defined]
                                .order_by(WebhookAttempt.number)).all():
            attempts[row.delivery_id].append(row)
    return [(d, attempts[d.id][-ATTEMPTS_SHOWN:]) for d in found]


def _someone_is_told(session: Session, alert_emails: list[str]) -> None:
    if not alert_emails and not seller_addresses(session):
        raise Refused("nobody would be told if this endpoint were disabled: give alert_emails, or set the "
                      "seller's addresses (NOTIFICATIONS_SELLER_EMAILS)")
