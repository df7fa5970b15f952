"""Payment provider webhooks: verified on the raw body, deduplicated on the provider's event id,
accepted in any order (a late or repeated event cannot undo a newer state)."""

from __future__ import annotations

import logging
from dataclasses import asdict

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.checkout import billing, handlers
from postsale.checkout.adapters.payments.port import PaymentError, PaymentProvider, WebhookEvent
from postsale.checkout.adapters.tables import CheckoutSession
from postsale.checkout.entrypoints.returned_payments import give_back
from postsale.checkout.provider_payment_lock import hold_provider_payment
from postsale.runtime import wakeups
from postsale.runtime.clock import utcnow

log = logging.getLogger(__name__)
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


@webhooks.post("/{provider_name}")
async def provider_webhook(provider_name: str, request: Request) -> dict[str, str]:
    provider: PaymentProvider = request.app.state.payments
    if provider_name != provider.name:
        raise HTTPException(status_code=404, detail=f"This store takes no webhooks from {provider_name[:20]}.")
    payload = await request.body()
    try:
        event = provider.parse_webhook(payload, request.headers)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"invalid webhook: {exc}") from exc
    try:
        return {"status": await to_thread.run_sync(handle_provider_event, request.app, event)}
    except PaymentError as exc:  # a payment to give back, and the provider out of reach: deliver it again
        raise HTTPException(status_code=503, detail=f"try again later: {exc}") from exc


def handle_provider_event(app, event: WebhookEvent) -> str:
    """One provider event, once: a payment that succeeded completes its checkout when its amount and
    currency are what the attempt charges, and is given back otherwise; a refund or a dispute is
    applied to the purchases it concerns, and one about a payment not known yet waits for it.
    Returns `accepted` or `duplicate`; raises PaymentError when a payment to give back cannot be
    refunded yet (the event is then not recorded, so its redelivery tries again)."""
    provider: PaymentProvider = app.state.payments
    now = utcnow()
    with Session(app.state.engine) as session:
        recorded = handlers.record_provider_event(session, source=provider.name, external_id=event.event_id,
                                                  type=event.type)
        if recorded is None:
            return "duplicate"
        payment = event.payment
        checkout = session.get(CheckoutSession, payment.attempt_id) if payment and payment.attempt_id else None
        if payment is not None and checkout is None:
            log.warning("%s payment %s names no known checkout", provider.name, payment.payment_id)
        elif payment is not None and payment.succeeded:
            try:
                handlers.complete_first_payment(session, checkout, provider=provider.name, result=payment,
                                                secret_key=app.state.secret_key, urls=app.state.urls)
            except handlers.PaymentMismatch as exc:
                # Not what the attempt charges: nothing is completed, and the money goes back before
                # the event counts as handled.
                session.rollback()
                give_back(app.state.engine, provider, payment.attempt_id, payment, reason=str(exc))
                recorded = handlers.record_provider_event(session, source=provider.name, external_id=event.event_id,
                                                          type=event.type)
                if recorded is None:
                    return "duplicate"
            except handlers.CheckoutError as exc:
                # Recorded and not completed: a payment that does not match its checkout grants nothing.
                log.error("%s payment %s refused: %s", provider.name, payment.payment_id, exc)
        about = [event.dispute.payment_id] if event.dispute else []
        about += [refund.payment_id for refund in event.refunds]
        if about:
            # Held before looking for the payment: a payment being recorded at this moment commits
            # first and is found, or looks for its waiting events after this one is committed.
            hold_provider_payment(session, *about)
            if not billing.apply_provider_event(session, event, provider=provider.name, now=now):
                recorded.handled = False  # applied when its payment is recorded
                recorded.payment_id = about[0]
                recorded.payload = asdict(event)
                session.add(recorded)
        try:
            session.commit()
        except IntegrityError:
            # The same event delivered twice at once, or the buyer's return completed it first.
            session.rollback()
            return "duplicate"
    return "accepted"


async def relay_provider_events(app) -> None:
    """Events the provider reports without webhooks (the sandbox's disputes), handled like webhooks."""
    provider: PaymentProvider = app.state.payments

    async def work() -> bool:
        events = await to_thread.run_sync(provider.pending_events)
        for event in events:
            await to_thread.run_sync(handle_provider_event, app, event)
            await to_thread.run_sync(provider.acknowledge, event)
        return False

    await wakeups.run_loop(app.state.engine, "provider-events", work, poll_interval=1.0)
