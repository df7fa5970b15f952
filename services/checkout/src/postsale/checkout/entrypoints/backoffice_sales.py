"""The back office's sales: the purchases, newest first, and each purchase's information page with
its actions: refund in full or in part (the owner's), cancel at the period's end, on a date or now,
undo a pending cancellation, pause, resume, and the sandbox's test clock.

Each action is a billing use case the JSON admin API (`admin_billing`) calls too; the page adds a
confirmation before what moves money or removes access, and says what happened after. They sit
under `/admin/sales`, a path the JSON admin API does not use.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.checkout import billing, card_expiry, sales
from postsale.checkout.adapters.payments.port import PaymentError
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.tables import Offer, Purchase, Refund, Subscription
from postsale.checkout.domain.billing_cycle import BillingError
from postsale.checkout.domain.money import MAX_AMOUNT_TEXT, AmountError, NotAnAmount, format_major, format_money, read_major
from postsale.checkout.entrypoints.admin_billing import MAX_SIMULATED_DAYS, ClockAdvance, advance_clock
from postsale.checkout.entrypoints.buyer import templates
from postsale.contracts import AccessPolicy
from postsale.runtime.backoffice import (FormError, form_text, is_submission_token, page_number, submission_token,
                                         typed_again)
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffDep, StaffSession, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)
MAX_SEARCH = 200
MAX_REASON = 500
CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
Text = Annotated[str, Form()]


@pages.get("/sales", response_class=HTMLResponse)
def sales_page(request: Request, session: SessionDep, staff: StaffDep, q: str = "", customer: str = "",
               page: str = "1"):
    """Every purchase, newest first; those whose buyer's email contains `q`, or of one customer
    (`customer`: the customer profile in accounts links here)."""
    q, number = typed_again(q, MAX_SEARCH).strip(), page_number(page[:10])
    error = None
    if customer and not CUSTOMER_ID.fullmatch(customer):
        error, customer = "That is not a customer id (they look like cus_0123abcd).", ""
    found, more = ([], False) if error else sales.search(session, email=q, customer_id=customer, page=number)

    def page_url(n: int) -> str:
        return "/admin/sales?" + urlencode({**({"q": q} if q else {}), **({"customer": customer} if customer else {}),
                                            "page": n})

    return templates.TemplateResponse(request, "backoffice/sales.html", {
        **backoffice_context(request, staff, "Sales"), "q": q, "customer": customer, "rows": found, "page": number,
        "error": error, "profile_url": _profile_url(request, customer) if customer else None,
        "previous_url": page_url(number - 1) if number > 1 else None, "next_url": page_url(number + 1) if more else None,
    }, status_code=422 if error else 200)


# --- a purchase's page ----------------------------------------------------------------------


def _profile_url(request: Request, customer_id: str) -> str:
    return f"{request.app.state.urls.accounts_url}/admin/customers/{customer_id}/profile"


def _purchase_or_404(session: Session, purchase_id: str, *, lock: bool = False) -> Purchase:
    purchase = (session.get(Purchase, purchase_id, with_for_update=lock)
                if len(purchase_id) <= 64 and "\x00" not in purchase_id else None)
    if purchase is None:
        raise HTTPException(status_code=404, detail="There is no such purchase.")
    return purchase


def _policy(session: Session, purchase: Purchase) -> AccessPolicy:
    offer = session.get(Offer, purchase.offer_id)
    return AccessPolicy(**offer.access_policy) if offer else AccessPolicy()


def _is_sandbox(request: Request) -> bool:
    return isinstance(request.app.state.payments, SandboxProvider)


def _render(request: Request, session: Session, staff: StaffSession, purchase: Purchase, *,
            template: str = "backoffice/sale.html", status_code: int = 200, **extra) -> HTMLResponse:
    view = sales.sale(session, purchase)
    urls = request.app.state.urls
    policy = AccessPolicy(**view.offer.access_policy) if view.offer else AccessPolicy()
    return templates.TemplateResponse(request, template, {
        **backoffice_context(request, staff, "Sales"), "sale": view, "purchase": purchase, "policy": policy,
        "offer_name": view.offer.name if view.offer else purchase.offer_id,
        "kind": sales.kind_name(view.subscription.kind) if view.subscription else "",
        "access_url": f"{urls.entitlements_url}/admin/access/{purchase.customer_id}",
        "profile_url": _profile_url(request, purchase.customer_id), "sandbox": _is_sandbox(request),
        "max_days": MAX_SIMULATED_DAYS, "today": billing.customer_now(session, purchase.customer_id).date(),
        "refund_form": {"amount": format_major(view.refundable, purchase.currency), "reason": ""},
        "cancel_form": {"at": ""}, "clock_form": {"days": "30"}, "notice": None, "error": None,
        **extra,
    }, status_code=status_code)


def _done_message(session: Session, purchase: Purchase, done: str, days: str, ran: str) -> str | None:
    """What the action just taken did, in the seller's words."""
    subscription = session.get(Subscription, purchase.subscription_id) if purchase.subscription_id else None
    name = sales.kind_name(subscription.kind) if subscription else "subscription"
    if done == "refunded":
        refund = session.exec(select(Refund).where(Refund.purchase_id == purchase.id)
                              .order_by(Refund.refunded_at.desc(), Refund.id.desc())).first()  # type: ignore[attr-defined]
        if refund is None:
            return None
        left = billing.refundable(purchase)
        return f"Refunded {format_money(refund.amount, refund.currency)} to {purchase.email}. " + (
            "The purchase is refunded in full: the customer's access to it is removed." if left <= 0
            else f"{format_money(left, purchase.currency)} is left to refund.")
    if done == "cancel_scheduled" and subscription is not None and subscription.cancel_at:
        return (f"The {name} will end on {subscription.cancel_at.strftime('%d %b %Y')}: no payment is taken after that. "
                "You can undo the cancellation until then.")
    if done == "clock" and days.isascii() and days.isdigit() and ran.isascii() and ran.isdigit():
        return (f"The test customer's time moved {int(days[:5])} days on; {int(ran[:5])} renewal, retry or "
                "cancellation step(s) ran on the way.")
    if done == "paused":
        return f"The {name} is paused: no payments are taken until you resume it." + (
            " The customer's access is suspended meanwhile." if _policy(session, purchase).on_pause == "suspend" else "")
    return {"cancelled": f"The {name} is cancelled now: it has ended, and no more payments are taken.",
            "undone": f"The cancellation is undone: the {name} goes on as before.",
            "resumed": f"The {name} is resumed: payments start again."}.get(done)


@pages.get("/sales/{purchase_id}", response_class=HTMLResponse)
def sale_page(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep, done: str = "",
              days: str = "", ran: str = ""):
    """The purchase information page: what was bought, the buyer, payments made and due, refunds,
    the billing, and the order's timeline, newest first."""
    purchase = _purchase_or_404(session, purchase_id)
    return _render(request, session, staff, purchase, notice=_done_message(session, purchase, done[:20], days, ran))


def _back(purchase: Purchase, done: str, **query: int) -> RedirectResponse:
    return RedirectResponse(f"/admin/sales/{purchase.id}?{urlencode({'done': done, **query})}", status_code=303)


# --- refunds (the owner's) ------------------------------------------------------------------


def _refund_amount(purchase: Purchase, text: str) -> int:
    """The amount typed, in minor units; empty: what is left to refund."""
    left = billing.refundable(purchase) if purchase.provider_payment_id else 0
    if left <= 0:
        raise FormError("There is nothing left to refund on this purchase.")
    if not text.strip():
        return left
    try:
        amount = read_major(text, purchase.currency)
    except NotAnAmount as exc:
        raise FormError(f"Enter the amount to refund, like {format_major(left, purchase.currency)}.") from exc
    except AmountError as exc:
        raise FormError(str(exc)) from exc
    if amount <= 0:
        raise FormError(f"Enter the amount to refund, like {format_major(left, purchase.currency)}.")
    if amount > left:
        raise FormError(f"At most {format_money(left, purchase.currency)} is left to refund on this purchase.")
    return amount


def _reason(text: str) -> str | None:
    return form_text(text, label="A reason", max_length=MAX_REASON) or None


def _refund_form(amount: str, reason: str) -> dict:
    """The refund form as typed, to show it again."""
    return {"amount": typed_again(amount, MAX_AMOUNT_TEXT), "reason": typed_again(reason, MAX_REASON)}


@pages.get("/sales/{purchase_id}/refund", response_class=HTMLResponse)
def refund_confirmation(purchase_id: str, request: Request, session: SessionDep, staff: OwnerDep,
                        amount: str = "", reason: str = ""):
    """The refund's confirmation: how much, to whom, and what happens to access. Changes nothing;
    its form carries a one-time token, so that posting it twice refunds once."""
    purchase = _purchase_or_404(session, purchase_id)
    try:
        minor, why = _refund_amount(purchase, amount), _reason(reason)
    except FormError as exc:
        return _render(request, session, staff, purchase, status_code=422, refund_error=str(exc),
                       refund_form=_refund_form(amount, reason))
    return _render(request, session, staff, purchase, template="backoffice/sale_refund.html", amount=minor,
                   amount_text=format_major(minor, purchase.currency), reason=why or "",
                   full=minor >= billing.refundable(purchase), submission=submission_token())


@pages.post("/sales/{purchase_id}/refund", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def refund(purchase_id: str, request: Request, session: SessionDep, staff: OwnerDep, amount: Text = "",
           reason: Text = "", submission: Text = ""):
    """Refunds through the payment provider (`billing.refund_purchase`); a full refund revokes access.
    The confirmation's token posted again (a double click, a reload) refunds nothing more and leads
    to the same page as the first time."""
    purchase = _purchase_or_404(session, purchase_id, lock=True)
    form = _refund_form(amount, reason)
    if not is_submission_token(submission):
        session.rollback()
        return _render(request, session, staff, purchase, status_code=422, refund_form=form,
                       refund_error="Nothing was refunded: review the refund and confirm it on its confirmation page.")
    done = billing.refund_of_submission(session, submission)
    if done is not None and done.purchase_id == purchase.id:
        session.rollback()
        return _back(purchase, "refunded")
    try:
        minor, why = _refund_amount(purchase, amount), _reason(reason)
    except FormError as exc:
        session.rollback()
        return _render(request, session, staff, purchase, status_code=422, refund_error=str(exc), refund_form=form)
    try:
        billing.refund_purchase(session, purchase, amount=minor, reason=why, provider=request.app.state.payments,
                                now=billing.customer_now(session, purchase.customer_id), submission=submission)
        session.commit()
    except (BillingError, PaymentError) as exc:
        session.rollback()
        return _render(request, session, staff, purchase, status_code=409 if isinstance(exc, BillingError) else 502,
                       refund_error=f"Nothing was refunded: {exc}", refund_form=form)
    except IntegrityError:  # the same form, posted at the same moment, made the refund first
        session.rollback()
        if billing.refund_of_submission(session, submission) is None:
            raise
    return _back(purchase, "refunded")


# --- the billing: cancel, undo, pause, resume (owner and support) ---------------------------


def _subscription(session: Session, purchase: Purchase) -> Subscription:
    subscription = (session.get(Subscription, purchase.subscription_id, with_for_update=True)
                    if purchase.subscription_id else None)
    if subscription is None:
        raise HTTPException(status_code=409, detail="This purchase has no subscription or payment plan.")
    return subscription


def _change(request: Request, session: Session, staff: StaffSession, purchase: Purchase,
            change: Callable[[Subscription, datetime], object], done: str, *, form: dict | None = None) -> Response:
    """Runs one billing use case at the customer's time; its refusal is shown on the page (409),
    changing nothing."""
    subscription = _subscription(session, purchase)
    try:
        change(subscription, billing.customer_now(session, purchase.customer_id))
    except BillingError as exc:
        session.rollback()
        return _render(request, session, staff, purchase, status_code=409, billing_error=f"Nothing changed: {exc}",
                       cancel_form=form or {"at": ""})
    session.commit()
    return _back(purchase, done)


def _cancel_date(text: str) -> datetime:
    if not DATE.fullmatch(text):
        raise FormError("Choose the date the billing ends, like 2030-01-31.")
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise FormError("That date does not exist: choose another.") from exc


@pages.get("/sales/{purchase_id}/cancel-now", response_class=HTMLResponse)
def cancel_now_confirmation(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep):
    """Cancelling now ends the billing and the customer's access at once: asked first."""
    purchase = _purchase_or_404(session, purchase_id)
    if not purchase.subscription_id:
        raise HTTPException(status_code=409, detail="This purchase has no subscription or payment plan.")
    return _cancel_confirmation(request, session, staff, purchase, "now", None)


def _cancel_confirmation(request: Request, session: Session, staff: StaffSession, purchase: Purchase, when: str,
                         moment: datetime | None) -> HTMLResponse:
    subscription = session.get(Subscription, purchase.subscription_id)
    ends_on = moment or (subscription.current_period_end if when == "period_end" else None)
    return _render(request, session, staff, purchase, template="backoffice/sale_cancel.html", cancel_when=when,
                   cancel_at=moment.strftime("%Y-%m-%d") if moment else "", ends_on=ends_on)


def _removes_access_now(session: Session, purchase: Purchase, when: str) -> bool:
    """Cancelling now always ends access at once; a later cancellation does under the offer's
    `on_cancel: now` policy."""
    return when == "now" or _policy(session, purchase).on_cancel == "now"


@pages.post("/sales/{purchase_id}/cancel", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def cancel(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep, when: Text = "",
           at: Text = "", reason: Text = "", confirm: Text = ""):
    """Cancels at the period's end, on a date, or now; what removes access now is confirmed first."""
    purchase = _purchase_or_404(session, purchase_id, lock=True)
    form = {"at": at[:10]}
    try:
        if when not in ("period_end", "date", "now"):
            raise FormError("Choose when the billing ends: at the end of the period, on a date, or now.")
        moment = _cancel_date(at) if when == "date" else None
        why = _reason(reason)
    except FormError as exc:
        session.rollback()
        return _render(request, session, staff, purchase, status_code=422, billing_error=str(exc), cancel_form=form)
    if confirm != "yes" and purchase.subscription_id and _removes_access_now(session, purchase, when):
        session.rollback()
        return _cancel_confirmation(request, session, staff, purchase, when, moment)
    return _change(request, session, staff, purchase, lambda subscription, now: billing.cancel_subscription(
        session, subscription, now, when=when, at=moment, actor="seller", reason=why),  # type: ignore[arg-type]
        "cancelled" if when == "now" else "cancel_scheduled", form=form)


@pages.post("/sales/{purchase_id}/undo-cancel", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def undo_cancel(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep):
    purchase = _purchase_or_404(session, purchase_id, lock=True)
    return _change(request, session, staff, purchase, lambda subscription, now: billing.undo_cancellation(
        session, subscription, now, actor="seller"), "undone")


@pages.get("/sales/{purchase_id}/pause", response_class=HTMLResponse)
def pause_confirmation(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep):
    """Pausing under the offer's `on_pause: suspend` policy removes access until resumed: asked first."""
    purchase = _purchase_or_404(session, purchase_id)
    if not purchase.subscription_id:
        raise HTTPException(status_code=409, detail="This purchase has no subscription or payment plan.")
    return _render(request, session, staff, purchase, template="backoffice/sale_pause.html")


@pages.post("/sales/{purchase_id}/pause", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def pause(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep, confirm: Text = ""):
    """Pauses the billing; when the offer suspends access meanwhile, only once confirmed."""
    purchase = _purchase_or_404(session, purchase_id, lock=True)
    if confirm != "yes" and purchase.subscription_id and _policy(session, purchase).on_pause == "suspend":
        session.rollback()
        return _render(request, session, staff, purchase, template="backoffice/sale_pause.html")
    return _change(request, session, staff, purchase, lambda subscription, now: billing.pause_subscription(
        session, subscription, now, actor="seller"), "paused")


@pages.post("/sales/{purchase_id}/resume", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def resume(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep):
    purchase = _purchase_or_404(session, purchase_id, lock=True)

    def resume_and_watch_card(subscription: Subscription, now: datetime) -> None:
        billing.resume_subscription(session, subscription, now, actor="seller")
        card_expiry.watch_again(session, subscription, now)  # as the JSON API: the paused check warned of nothing

    return _change(request, session, staff, purchase, resume_and_watch_card, "resumed")


# --- the sandbox's test clock ---------------------------------------------------------------


@pages.post("/sales/{purchase_id}/clock", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def advance_test_clock(purchase_id: str, request: Request, session: SessionDep, staff: StaffDep,
                       advance_days: Text = ""):
    """The lifecycle simulator on the buyer: their time moves on, and every renewal, retry and
    cancellation due on the way runs (`admin_billing.advance_clock`). A sandbox store only."""
    purchase = _purchase_or_404(session, purchase_id)
    if not _is_sandbox(request):
        raise HTTPException(status_code=409, detail="The test clock works only in a sandbox store, where no money moves.")
    text = advance_days.strip()[:5]
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_SIMULATED_DAYS):
        return _render(request, session, staff, purchase, status_code=422, clock_form={"days": advance_days[:5]},
                       clock_error=f"Enter a number of days from 1 to {MAX_SIMULATED_DAYS}.")
    moved = advance_clock(ClockAdvance(customer_id=purchase.customer_id, advance_days=int(text)), request, session)
    return _back(purchase, "clock", days=int(text), ran=moved.ran)
