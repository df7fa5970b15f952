"""After the first payment: the sandbox's 3-D Secure page, the one-click upsells, and the way on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.exc import IntegrityError

from postsale.checkout import handlers
from postsale.checkout.adapters.payments.port import PaymentError
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import CheckoutSession, Offer, Purchase
from postsale.checkout.entrypoints.buyer import CustomerDep, after_purchase, checkout_or_404, page, provider_of
from postsale.runtime.db import SessionDep

router = APIRouter(tags=["pages"])


@router.get("/sandbox/authenticate/{payment_id}", response_class=HTMLResponse, tags=["sandbox"])
def sandbox_challenge(payment_id: str, request: Request):
    """The sandbox's stand-in for a bank's 3-D Secure page."""
    provider = provider_of(request)
    if not isinstance(provider, SandboxProvider):
        raise HTTPException(status_code=404, detail="This store does not use the sandbox.")
    result = provider.payment_result(payment_id[:64])
    if result.payment_id is None:
        raise HTTPException(status_code=404, detail="This payment does not exist.")
    return page(request, "authenticate.html", {"payment": result})


@router.post("/sandbox/authenticate/{payment_id}", response_class=HTMLResponse, tags=["sandbox"])
def sandbox_answer(payment_id: str, request: Request, outcome: Annotated[str, Form()] = ""):
    provider = provider_of(request)
    if not isinstance(provider, SandboxProvider):
        raise HTTPException(status_code=404, detail="This store does not use the sandbox.")
    result = provider.authenticate(payment_id[:64], approved=outcome == "approve")
    if result is None:
        raise HTTPException(status_code=404, detail="This payment does not exist.")
    return RedirectResponse(f"/checkout/{result.attempt_id}/complete", status_code=303)



# --- upsells --------------------------------------------------------------------------------


@router.get("/checkout/{checkout_id}/upsell", response_class=HTMLResponse)
def upsell_page(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep,
                error: str | None = None):
    checkout = checkout_or_404(session, checkout_id)
    offer = handlers.current_upsell(session, checkout)
    if offer is None:
        return after_purchase(request, session, checkout, customer)
    return page(request, "upsell.html", {
        "checkout": checkout, "offer": offer, "terms": handlers.offer_terms(offer).describe(),
        "position": handlers.position_token(checkout), "downsell": checkout.funnel_downsell, "error": error,
    }, 402 if error else 200)


@router.post("/checkout/{checkout_id}/upsell", response_class=HTMLResponse)
def answer_upsell(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep,
                  position: Annotated[str, Form()] = "", decision: Annotated[str, Form()] = ""):
    """Accept charges the saved payment method, one click, no card; decline moves on. A stale tab
    or a second click names a step the buyer already left, and changes nothing."""
    checkout = checkout_or_404(session, checkout_id)
    offer = handlers.current_upsell(session, checkout)
    if offer is None or position != handlers.position_token(checkout) or decision not in ("accept", "decline"):
        return RedirectResponse(f"/checkout/{checkout.id}/upsell", status_code=303)
    if decision == "decline":
        handlers.decline_upsell(session, checkout, offer, position=position)
        session.commit()
        return RedirectResponse(f"/checkout/{checkout.id}/upsell", status_code=303)
    provider = provider_of(request)
    try:
        result = provider.charge_saved(
            payment_method_id=checkout.payment_method_id or "", customer_ref=checkout.customer_ref,
            amount=offer.price_amount, currency=offer.currency, attempt_id=checkout.id,
            idempotency_key=handlers.upsell_idempotency_key(checkout, offer))
    except PaymentError as exc:
        return upsell_page(checkout_id, request, session, customer, error=str(exc))
    if not result.succeeded:
        return upsell_page(checkout_id, request, session, customer,
                           error=result.message or "The payment did not go through.")
    try:
        handlers.complete_upsell(session, checkout, offer, provider=provider.name, result=result,
                                 urls=request.app.state.urls)
        session.commit()
    except IntegrityError:
        session.rollback()  # the same step, accepted in another tab at the same moment
    return RedirectResponse(f"/checkout/{checkout.id}/upsell", status_code=303)


# --- after the purchase ---------------------------------------------------------------------


@router.get("/checkout/{checkout_id}/next", response_class=HTMLResponse)
def next_page(checkout_id: str, request: Request, session: SessionDep, customer: CustomerDep):
    """Where a paid buyer goes next: the funnel, then the account page or the destination."""
    return after_purchase(request, session, checkout_or_404(session, checkout_id), customer)



@router.get("/purchases/{purchase_id}/thank-you", response_class=HTMLResponse)
def thank_you(purchase_id: str, request: Request, session: SessionDep):
    """The offer's thank-you page: what was bought, and where to find it. Holds no secret."""
    purchase = session.get(Purchase, purchase_id[:64])
    if purchase is None:
        raise HTTPException(status_code=404, detail="This purchase does not exist.")
    siblings = handlers.purchases_of(session, session.get(CheckoutSession, purchase.checkout_session_id))
    offers = [(p, session.get(Offer, p.offer_id)) for p in siblings]
    return page(request, "thank_you.html", {"purchases": offers, "library_url": request.app.state.urls.library_url})
