"""Payment provider webhooks: verified on the raw body, deduplicated on the provider's event id,
accepted in any order (a late or repeated event cannot undo a newer state)."""

from __future__ import annotations

import logging

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.checkout import handlers
from postsale.checkout.adapters.payments.port import PaymentProvider, WebhookEvent
from postsale.checkout.adapters.tables import CheckoutSession

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
    return await to_thread.run_sync(_handle, request, provider, event)


def _handle(request: Request, provider: PaymentProvider, event: WebhookEvent) -> dict[str, str]:
    with Session(request.app.state.engine) as session:
        if not handlers.record_provider_event(session, source=provider.name, external_id=event.event_id,
                                              type=event.type):
            return {"status": "duplicate"}
        payment = event.payment
        checkout = session.get(CheckoutSession, payment.attempt_id) if payment and payment.attempt_id else None
        if payment is not None and checkout is None:
            log.warning("%s payment %s names no known checkout", provider.name, payment.payment_id)
        elif payment is not None and payment.succeeded:
            try:
                handlers.complete_first_payment(session, checkout, provider=provider.name, result=payment,
                                                secret_key=request.app.state.secret_key, urls=request.app.state.urls)
            except handlers.CheckoutError as exc:
                # Recorded and not completed: a payment that does not match its checkout grants nothing.
                log.error("%s payment %s refused: %s", provider.name, payment.payment_id, exc)
        try:
            session.commit()
        except IntegrityError:
            # The same event delivered twice at once, or the buyer's return completed it first.
            session.rollback()
            return {"status": "duplicate"}
    return {"status": "accepted"}
