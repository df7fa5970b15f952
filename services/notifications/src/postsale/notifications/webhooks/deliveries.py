"""Delivering events to the seller's endpoints: a delivery per event and endpoint, attempts on the
shared scheduler with retries for three days, dead letters the seller replays, and the disabling
of an endpoint that keeps failing, with an email to the seller.

Each use case runs inside the caller's transaction and never commits. Order: per endpoint and
ordering key (the event's Kafka key, the customer for a customer's events) at most one delivery
is `pending` at a time; the next one (`waiting`) starts when it is delivered or given up. Every
change to an endpoint's queue locks the endpoint's row, so an event arriving while its
predecessor finishes is never left waiting.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Callable

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from postsale.contracts import Event
from postsale.notifications.emails import queue_email, queue_for_sellers
from postsale.notifications.webhooks import domain
from postsale.notifications.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSend
from postsale.runtime import wakeups
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import one_read, remembered
from postsale.runtime.scheduler import end_pending

log = logging.getLogger(__name__)
SENDS = "webhook-sender"
"""The scheduler of `webhook_sends`; its workers wake as `webhook-sender:<n>`."""
MAX_WORKERS = 32
UNFINISHED = ("waiting", "pending")
MAX_REPLAY = 1000  # dead letters replayed per call: one transaction stays short
PRUNE_BATCH = 500  # finished deliveries removed per transaction
DISABLED_TEMPLATE = "webhook_endpoint_disabled"
GONE = 410  # the receiver's way to ask for no more events (Standard Webhooks): disables the endpoint


class Conflict(ValueError):
    """The delivery or endpoint is not in a state that allows it, in words for the seller."""


@dataclass(frozen=True)
class Outcome:
    """What one HTTP call came to."""

    succeeded: bool
    latency_ms: int
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None


Call = Callable[[WebhookEndpoint, WebhookDelivery], Outcome]


def worker_name(number: int) -> str:
    return f"{SENDS}:{number}"


def wake_senders(session: Session) -> None:
    """Runs inside the caller's transaction: the senders look for due attempts once it commits."""
    for number in range(MAX_WORKERS):
        wakeups.wake_after_commit(session, worker_name(number))


# --- events in ------------------------------------------------------------------------------


def wanted_by_endpoints(engine: Engine, events: list[Event]) -> list[bool]:
    """Which of `events` an enabled endpoint wants (`record_event` does nothing with the others),
    read before the consumer opens a transaction: with no endpoint for a type, as for most events
    of most stores, a batch costs one query instead of a transaction and an inbox row per event. An
    endpoint enabled meanwhile gets the events after it, as when it is enabled during the batch."""
    with one_read(engine) as connection:
        wanted = set(chain.from_iterable(connection.execute(
            select(WebhookEndpoint.event_types).where(WebhookEndpoint.enabled)).scalars()))
    return [event.event_type in wanted for event in events]


def record_event(session: Session, event: Event, event_id: str) -> None:
    """Started by every event on a public topic: a delivery to each enabled endpoint that wants its
    type, started at once unless an earlier one of the same key is unfinished. Safe to redeliver:
    one delivery per event and endpoint (a unique constraint)."""
    enabled = remembered(session, WebhookEndpoint, "enabled", lambda: [
        (e.id, e.event_types) for e in session.exec(select(WebhookEndpoint).where(WebhookEndpoint.enabled)
                                                    .order_by(WebhookEndpoint.id)).all()])
    wanted = [endpoint_id for endpoint_id, event_types in enabled if event.event_type in event_types]
    if not wanted:
        return
    now = utcnow()
    body = domain.payload(event, now)
    for endpoint_id in wanted:  # in id order: two consumers lock endpoints in the same order
        endpoint = _locked(session, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            continue
        message_id = domain.message_id(endpoint.id, event_id)
        if _delivery(session, message_id) is not None:
            continue
        session.add(WebhookDelivery(id=message_id, endpoint_id=endpoint.id, event_id=event_id,
                                    event_type=event.event_type, ordering_key=event.key(), payload=body,
                                    status="waiting", created_at=now))
        session.flush()
        _start_next(session, endpoint.id, event.key(), now)


# --- attempts -------------------------------------------------------------------------------


def attempt(session: Session, row: WebhookSend, now: datetime, *, call: Call, disable_after: timedelta) -> None:
    """Run by the scheduler for a due `webhook_sends` row: one HTTP call of its delivery, recorded;
    then the next attempt, the dead letter, or the next delivery of the same key. Does nothing for
    a delivery no longer pending (replayed, or its endpoint disabled or deleted meanwhile).

    An answer the database refuses to keep still ends as a failed attempt, retried on the schedule:
    a send row that kept failing would be given up by the scheduler and leave the delivery
    pending, and the customer's later deliveries waiting behind it, for ever."""
    delivery = _delivery(session, row.delivery_id)
    endpoint = session.get(WebhookEndpoint, row.endpoint_id)
    if delivery is None or delivery.status != "pending" or endpoint is None or not endpoint.enabled:
        return
    outcome = call(endpoint, delivery)
    try:
        _record(session, row, now, outcome, disable_after)
        session.flush()
    except Exception as exc:  # noqa: BLE001 - recorded as a failed attempt below
        log.exception("webhook %s: the attempt could not be recorded", row.delivery_id)
        session.rollback()
        # The claim's lock went with the rollback: a worker that ran the row meanwhile is waited for.
        claimed = session.get(WebhookSend, row.id, with_for_update=True, populate_existing=True)
        if claimed is None or claimed.done_at is not None:
            return
        _record(session, row, now, Outcome(False, outcome.latency_ms, status_code=outcome.status_code,
                                           error=f"the answer could not be recorded: {type(exc).__name__}"),
                disable_after)


def _record(session: Session, row: WebhookSend, now: datetime, outcome: Outcome, disable_after: timedelta) -> None:
    # Locked after the call, never during it: a slow endpoint holds no lock others wait for.
    endpoint = _locked(session, row.endpoint_id)
    delivery = _delivery(session, row.delivery_id)
    if delivery is not None:
        session.refresh(delivery, with_for_update=True)
    if endpoint is None or not endpoint.enabled or delivery is None or delivery.status != "pending":
        return
    # This attempt's successor is the delivery's one chain of retries (a replay may have started another).
    _close_sends(session, delivery.id, now, "closed: another attempt of the delivery was recorded", keep=row.id)
    delivery.attempts += 1
    delivery.round_attempts += 1
    session.add(WebhookAttempt(delivery_id=delivery.id, number=delivery.attempts, attempted_at=now,
                               succeeded=outcome.succeeded, status_code=outcome.status_code,
                               latency_ms=outcome.latency_ms,
                               response_excerpt=domain.excerpt(outcome.response_excerpt, domain.EXCERPT_CHARS),
                               error=domain.excerpt(outcome.error, domain.ERROR_CHARS)))
    delivery.last_status_code = outcome.status_code
    delivery.last_error = None if outcome.succeeded else domain.excerpt(
        outcome.error or f"answered {outcome.status_code}", domain.ERROR_CHARS)
    if outcome.succeeded:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "delivered", now, None
        endpoint.failing_since, endpoint.last_success_at = None, now
    else:
        endpoint.failing_since = endpoint.failing_since or now
        retry_at = domain.next_attempt_at(delivery.round_attempts, now)
        if retry_at is None:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
            log.warning("webhook %s to %s failed for good after %s attempts", delivery.id, endpoint.url,
                        delivery.attempts)
        else:
            _schedule(session, delivery, retry_at)
    session.add_all([delivery, endpoint])
    if delivery.status != "pending":
        _start_next(session, endpoint.id, delivery.ordering_key, now)
    if outcome.status_code == GONE:
        disable(session, endpoint, now, "the endpoint answered 410 Gone: it asks for no more events")
    elif not outcome.succeeded and domain.should_disable(as_utc(endpoint.failing_since), now, disable_after):
        disable(session, endpoint, now, f"every attempt failed since {as_utc(endpoint.failing_since):%Y-%m-%d %H:%M} "
                                        f"UTC; the last: {delivery.last_error}")
    elif delivery.status == "failed" and not _being_retried(session, endpoint.id):
        # Nothing of the endpoint is tried any more: whether it works again is not known, so the
        # next failure starts a fresh count instead of disabling an endpoint that may have recovered.
        endpoint.failing_since = None


def postpone(session: Session, row: WebhookSend, at: datetime) -> None:
    """The endpoint has as many attempts running as it may have: this one runs at `at` instead."""
    session.add(WebhookSend(id=f"snd_{uuid.uuid4().hex}", due_at=at, endpoint_id=row.endpoint_id,
                            delivery_id=row.delivery_id))
    wake_senders(session)


# --- the seller's actions -------------------------------------------------------------------


def replay(session: Session, delivery: WebhookDelivery, now: datetime) -> None:
    """A dead letter is sent again with a fresh schedule and the same `webhook-id`, after any
    unfinished delivery of the same key. Conflict unless it failed and its endpoint is enabled."""
    endpoint = _locked(session, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise Conflict("the endpoint is disabled: enable it first")
    session.refresh(delivery, with_for_update=True)
    if delivery.status != "failed":
        raise Conflict(f"only a failed delivery is replayed; this one is {delivery.status}")
    _requeue(session, delivery, now)


def replay_failed(session: Session, endpoint_id: str, now: datetime) -> int:
    """The endpoint's dead letters sent again, in their order per key, at most `MAX_REPLAY` of the
    oldest per call; returns how many (call again while it is `MAX_REPLAY`)."""
    endpoint = _locked(session, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise Conflict("the endpoint is disabled: enable it first")
    failed = session.exec(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "failed")
        .order_by(WebhookDelivery.seq).limit(MAX_REPLAY).with_for_update()).all()
    for delivery in failed:
        _requeue(session, delivery, now)
    return len(failed)


def stop_unfinished(session: Session, endpoint_id: str, now: datetime, reason: str) -> int:
    """Every unfinished delivery of the endpoint becomes a dead letter (replayable); returns how
    many. Their scheduled attempts stay (another worker may hold one): each finds its delivery
    no longer pending and does nothing."""
    session.flush()
    unfinished = session.exec(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.status.in_(UNFINISHED))).all()  # type: ignore[attr-defined]
    for delivery in unfinished:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
        delivery.last_error = reason
        session.add(delivery)
    return len(unfinished)


def disable(session: Session, endpoint: WebhookEndpoint, now: datetime, reason: str) -> None:
    """The endpoint gets no more events; what it had not received becomes dead letters; the seller
    is emailed (the endpoint's alert addresses and the seller's), never left to find out."""
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, now, reason[:1000]
    endpoint.updated_at = now
    session.add(endpoint)
    stopped = stop_unfinished(session, endpoint.id, now, "the endpoint was disabled")
    failed = len(session.exec(select(WebhookDelivery.seq).where(WebhookDelivery.endpoint_id == endpoint.id,
                                                                WebhookDelivery.status == "failed")).all())
    log.error("webhook endpoint %s (%s) disabled: %s", endpoint.id, endpoint.url, reason)
    key = f"webhook-endpoint-disabled:{endpoint.id}:{int(now.timestamp())}"
    # Only what the email shows: the seller edits the template, and the row holds the signing secret.
    shown = {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description}
    context = {"endpoint": shown, "reason": endpoint.disabled_reason, "disabled_at": now,
               "failing_since": as_utc(endpoint.failing_since), "stopped": stopped, "failed": failed}
    for address in endpoint.alert_emails:
        queue_email(session, key=f"{key}:{address.lower()}", template=DISABLED_TEMPLATE, to=address,
                    customer_id=None, **context)
    # Keyed like the alert addresses' emails, so an address in both lists gets one email.
    queue_for_sellers(session, key=key, template=DISABLED_TEMPLATE, **context)


# --- housekeeping ----------------------------------------------------------------------------


def prune(session: Session, before: datetime) -> int:
    """Removes up to `PRUNE_BATCH` deliveries delivered before `before`, with their attempts and
    their finished sends; returns how many (the caller runs it again while it is a full batch).
    Dead letters stay until the seller replays them or removes the endpoint."""
    old = session.exec(select(WebhookDelivery.id).where(WebhookDelivery.status == "delivered",
                                                        WebhookDelivery.finished_at < before)
                       .order_by(WebhookDelivery.seq).limit(PRUNE_BATCH)).all()
    if old:
        session.execute(delete(WebhookSend).where(WebhookSend.delivery_id.in_(old),  # type: ignore[attr-defined]
                                                  WebhookSend.done_at.is_not(None)))  # type: ignore[union-attr]
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old)))  # type: ignore[attr-defined]
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old),  # type: ignore[attr-defined]
                                                      WebhookDelivery.status == "delivered"))
    return len(old)


def reschedule_stranded(session: Session, now: datetime) -> int:
    """A pending delivery always has a scheduled attempt, unless the scheduler gave its attempt up
    (the attempt failed to run however often it was tried): such a delivery gets an attempt now,
    since the customer's later deliveries wait behind it. Returns how many, at most `PRUNE_BATCH`."""
    open_send = select(WebhookSend.id).where(WebhookSend.delivery_id == WebhookDelivery.id,
                                             WebhookSend.done_at.is_(None))  # type: ignore[union-attr]
    stranded = session.exec(select(WebhookDelivery.id, WebhookDelivery.endpoint_id).where(
        WebhookDelivery.status == "pending", ~open_send.exists()).limit(PRUNE_BATCH)).all()
    rescheduled = 0
    for delivery_id, endpoint_id in stranded:
        _locked(session, endpoint_id)
        delivery = _delivery(session, delivery_id)
        scheduled = select(WebhookSend.id).where(WebhookSend.delivery_id == delivery_id,
                                                 WebhookSend.done_at.is_(None))  # type: ignore[union-attr]
        if delivery is None or delivery.status != "pending" or session.exec(scheduled).first() is not None:
            continue  # moved on meanwhile
        log.error("webhook %s had no attempt scheduled: one is, now", delivery_id)
        _schedule(session, delivery, now)
        rescheduled += 1
    return rescheduled


# --- the queue of one endpoint and key ------------------------------------------------------


def _requeue(session: Session, delivery: WebhookDelivery, now: datetime) -> None:
    # Attempts still scheduled from before it was stopped are closed: one chain of retries only.
    _close_sends(session, delivery.id, now, "closed: the delivery was replayed")
    delivery.status, delivery.round_attempts, delivery.finished_at = "waiting", 0, None
    session.add(delivery)
    session.flush()
    _start_next(session, delivery.endpoint_id, delivery.ordering_key, now)


def _start_next(session: Session, endpoint_id: str, key: str, now: datetime) -> None:
    """Starts the earliest waiting delivery of the endpoint and key, unless one is pending.
    The caller holds the endpoint's lock."""
    queue = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                          WebhookDelivery.ordering_key == key)
    if session.exec(queue.where(WebhookDelivery.status == "pending").limit(1)).first() is not None:
        return
    head = session.exec(queue.where(WebhookDelivery.status == "waiting").order_by(WebhookDelivery.seq)
                        .limit(1)).first()
    if head is not None:
        head.status = "pending"
        _schedule(session, head, now)


def _schedule(session: Session, delivery: WebhookDelivery, at: datetime) -> None:
    delivery.next_attempt_at = at
    session.add(delivery)
    session.add(WebhookSend(id=f"snd_{uuid.uuid4().hex}", due_at=at, endpoint_id=delivery.endpoint_id,
                            delivery_id=delivery.id))
    wake_senders(session)


def _close_sends(session: Session, delivery_id: str, now: datetime, reason: str, *, keep: str | None = None) -> None:
    """Closes the delivery's scheduled attempts but `keep`. One running right now (locked by its
    worker) is skipped, not waited for: when it ends, recording it closes the others in turn."""
    end_pending(session, WebhookSend, WebhookSend.delivery_id == delivery_id, WebhookSend.id != keep, now=now,
                skip_locked=True, reason=reason)


def _being_retried(session: Session, endpoint_id: str) -> bool:
    pending = select(WebhookDelivery.seq).where(WebhookDelivery.endpoint_id == endpoint_id,
                                                WebhookDelivery.status == "pending")
    return session.exec(pending.limit(1)).first() is not None


def _locked(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id, with_for_update=True, populate_existing=True)


def _delivery(session: Session, message_id: str) -> WebhookDelivery | None:
    return session.exec(select(WebhookDelivery).where(WebhookDelivery.id == message_id)).first()
