"""The seller's view of sales: the purchases list and what a purchase's page shows, read from
checkout's own records only (its tables, the events its outbox keeps, and what other services told
of the purchase: `happenings`), never from another service's database.

A purchase's page is about its whole order (the checkout attempt): the offer, its order bump and
the upsells bought after it share one story. Read-only: the page's actions are the billing use
cases (`billing`), as the JSON admin API calls them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from itertools import count

from sqlalchemy import func
from sqlmodel import Session, select

from postsale.checkout import billing, happenings
from postsale.checkout.adapters.tables import (BillingJob, CardExpiryCheck, Cart, CatalogProduct, ChargeAttempt,
                                               CheckoutRecovery, CheckoutSession, Customer, Dispute, Offer, Payment,
                                               Purchase, Refund, ReturnedPayment, SimulatedClock,
                                               Subscription)
from postsale.checkout.customers import GRANTED
from postsale.checkout.domain.billing_cycle import LIVE, Cycle
from postsale.checkout.domain.money import format_money
from postsale.checkout.offers import offers_by_id
from postsale.checkout.records import offer_terms
from postsale.contracts import (CardExpiring, DecodeError, SubscriptionCancellationScheduled,
                                SubscriptionCancellationUndone, SubscriptionCancelled, SubscriptionPastDue,
                                SubscriptionPaused, SubscriptionResumed, UpsellDeclined, decode, topics)
from postsale.runtime.backoffice import PER_PAGE, page_of_query
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging.outbox import OutboxMessage

PAGE_SIZE = PER_PAGE
MAX_OUTBOX_EVENTS = 2000  # of one customer, newest first: far more than one order ever publishes
RENEWALS_SHOWN = 3
ELSEWHERE = {"access_granted": "Access granted", "access_revoked": "Access revoked",
             "access_suspended": "Access suspended", "access_restored": "Access restored",
             "email_sent": "Email sent", "email_failed": "Email not delivered"}
TRANSITIONS = (SubscriptionCancellationScheduled, SubscriptionCancellationUndone, SubscriptionCancelled,
               SubscriptionPaused, SubscriptionResumed, SubscriptionPastDue, CardExpiring)
ACTORS = {"seller": "the seller", "customer": "the customer", "system": "Postsale", "provider": "the payment provider"}


def kind_name(kind: str) -> str:
    return "payment plan" if kind == "payment_plan" else "subscription"


def _day(moment: datetime | None) -> str:
    return as_utc(moment).strftime("%d %b %Y") if moment else ""


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaleRow:
    purchase: Purchase
    offer_name: str
    role: str | None  # "order bump" | "upsell" | None (the order's own offer)
    statuses: list[str]


def purchase_role(purchase: Purchase, parent: Purchase | None) -> str | None:
    """An order bump shares its parent's payment; an upsell is charged on its own."""
    if purchase.parent_purchase_id is None:
        return None
    return "order bump" if parent is not None and parent.payment_id == purchase.payment_id else "upsell"


def statuses(purchase: Purchase, subscription: Subscription | None, *, granted: bool, disputed: bool) -> list[str]:
    """What a seller reads in the Status column: the money, then the billing."""
    labels = []
    if granted:
        labels.append("granted by the seller")
    elif purchase.amount == 0:
        labels.append("nothing charged" if subscription else "free")
    elif purchase.refunded >= purchase.amount:
        labels.append("refunded")
    elif purchase.refunded:
        labels.append("partly refunded")
    else:
        labels.append("paid")
    if disputed:
        labels.append("disputed")
    if subscription is not None:
        labels.append(f"{kind_name(subscription.kind)} {subscription.status.replace('_', ' ')}")
        if subscription.cancel_at and subscription.status in LIVE | {"paused"}:
            labels.append(f"ends {_day(subscription.cancel_at)}")
    return labels


def search(session: Session, *, email: str = "", customer_id: str = "", page: int = 1) -> tuple[list[SaleRow], bool]:
    """Purchases newest first, those whose buyer's email contains `email` and of `customer_id` when
    given; and whether a next page exists."""
    query = select(Purchase)
    if email:
        query = query.where(func.lower(Purchase.email).contains(email.lower(), autoescape=True))
    if customer_id:
        query = query.where(Purchase.customer_id == customer_id)
    found, more = page_of_query(session, query.order_by(Purchase.completed_at.desc(), Purchase.id.desc()),  # type: ignore[attr-defined]
                                page, PAGE_SIZE)
    offers = offers_by_id(session, list({p.offer_id for p in found}))
    parents = _by_id(session, Purchase, {p.parent_purchase_id for p in found if p.parent_purchase_id})
    subscriptions = _by_id(session, Subscription, {p.subscription_id for p in found if p.subscription_id})
    granted = set(session.exec(select(CheckoutSession.id).where(
        CheckoutSession.id.in_(list({p.checkout_session_id for p in found})),  # type: ignore[attr-defined]
        CheckoutSession.status == GRANTED)).all()) if found else set()
    disputed = set(session.exec(select(Dispute.purchase_id).where(
        Dispute.purchase_id.in_([p.id for p in found]), Dispute.status == "open")).all()) if found else set()  # type: ignore[attr-defined]
    rows = [SaleRow(p, offers[p.offer_id].name if p.offer_id in offers else p.offer_id,
                    purchase_role(p, parents.get(p.parent_purchase_id or "")),
                    statuses(p, subscriptions.get(p.subscription_id or ""), granted=p.checkout_session_id in granted,
                             disputed=p.id in disputed)) for p in found]
    return rows, more


def _by_id(session: Session, table, ids: set) -> dict:
    if not ids:
        return {}
    return {row.id: row for row in session.exec(select(table).where(table.id.in_(list(ids)))).all()}


# --- a purchase's page ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One moment of the timeline; `scheduled` ones are still to come."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    scheduled: bool = False
    order: int = 0  # among entries of the same moment, the later step of the story


@dataclass(frozen=True)
class DuePayment:
    at: datetime
    amount: int
    currency: str
    label: str


@dataclass
class Sale:
    purchase: Purchase
    offer: Offer | None
    customer_has_account: bool
    items: list[dict]  # each purchase of the order: purchase, offer, role, products, price, statuses
    payments: list[tuple[Payment, str]]
    refunds: list[tuple[Refund, str]]
    disputes: list[Dispute]
    returned: list[ReturnedPayment]
    subscription: Subscription | None
    due: list[DuePayment]
    timeline: list[Entry]
    refundable: int
    simulated_days: int = 0  # a test customer of the lifecycle simulator: their time runs this far ahead


def order_of(session: Session, checkout: CheckoutSession) -> list[Purchase]:
    """The order's purchases as they were bought: the offer (or the cart's, in the cart's order), its
    order bump, then the upsells as accepted."""
    found = session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id)).all()
    if checkout.cart_id:
        cart = session.get(Cart, checkout.cart_id)
        place = {offer_id: n for n, offer_id in enumerate(cart.offer_ids if cart else [])}
    else:
        place = {checkout.offer_id: 0}
    return sorted(found, key=lambda p: (as_utc(p.completed_at), p.parent_purchase_id is not None,
                                        place.get(p.offer_id, len(place)), p.id))


def sale(session: Session, purchase: Purchase) -> Sale:
    """Everything the purchase's page shows, with the timeline of its order."""
    checkout = session.get(CheckoutSession, purchase.checkout_session_id)
    order = order_of(session, checkout)
    by_id = {p.id: p for p in order}
    offers = offers_by_id(session, list({p.offer_id for p in order}))
    subscriptions = _by_id(session, Subscription, {p.subscription_id for p in order if p.subscription_id})
    refunds = list(session.exec(select(Refund).where(Refund.purchase_id.in_(list(by_id)))  # type: ignore[attr-defined]
                                .order_by(Refund.refunded_at, Refund.id)).all())
    disputes = list(session.exec(select(Dispute).where(Dispute.purchase_id.in_(list(by_id)))  # type: ignore[attr-defined]
                                 .order_by(Dispute.opened_at)).all())
    payments = list(session.exec(select(Payment).where(Payment.checkout_session_id == checkout.id)
                                 .order_by(Payment.paid_at, Payment.id)).all())
    open_disputes = {d.purchase_id for d in disputes if d.status == "open"}
    items = []
    for p in order:
        offer = offers.get(p.offer_id)
        items.append({
            "purchase": p, "offer": offer, "role": purchase_role(p, by_id.get(p.parent_purchase_id or "")),
            "products": [session.get(CatalogProduct, pid) or CatalogProduct(id=pid, name=pid, delivery_type="")
                         for pid in (offer.product_ids if offer else [])],
            "price": offer_terms(offer).describe() if offer else "",
            "statuses": statuses(p, subscriptions.get(p.subscription_id or ""), granted=checkout.status == GRANTED,
                                 disputed=p.id in open_disputes),
        })
    subscription = subscriptions.get(purchase.subscription_id or "")
    cycle = billing.cycle_of(session, subscription) if subscription else None
    customer = session.get(Customer, purchase.email)
    clock = session.get(SimulatedClock, purchase.customer_id)
    return Sale(
        purchase=purchase, offer=offers.get(purchase.offer_id),
        customer_has_account=bool(customer and customer.has_account), items=items,
        payments=[(p, _payment_label(p, order, offers, subscriptions)) for p in reversed(payments)],
        refunds=[(r, _offer_name(offers, by_id[r.purchase_id].offer_id)) for r in reversed(refunds)],
        disputes=disputes, returned=list(session.exec(select(ReturnedPayment).where(
            ReturnedPayment.checkout_session_id == checkout.id).order_by(ReturnedPayment.returned_at)).all()),
        subscription=subscription,
        due=payments_due(session, subscription, cycle) if subscription and cycle else [],
        timeline=timeline(session, checkout, order, offers, subscriptions, payments, refunds, disputes),
        refundable=billing.refundable(purchase) if purchase.provider_payment_id else 0,
        simulated_days=clock.offset_seconds // 86400 if clock else 0,
    )


def _offer_name(offers: dict[str, Offer], offer_id: str) -> str:
    return offers[offer_id].name if offer_id in offers else offer_id


def _payment_label(payment: Payment, order: list[Purchase], offers: dict[str, Offer],
                   subscriptions: dict[str, Subscription]) -> str:
    if payment.subscription_id:
        subscription = subscriptions.get(payment.subscription_id)
        what = "Instalment" if subscription and subscription.kind == "payment_plan" else "Renewal"
        return f"{what} of {_offer_name(offers, subscription.offer_id) if subscription else payment.subscription_id}"
    if payment.step.startswith("upsell:"):
        return f"Upsell: {_offer_name(offers, payment.step.removeprefix('upsell:'))}"
    paid_for = [_offer_name(offers, p.offer_id) for p in order if p.payment_id == payment.id]
    return f"First payment: {', '.join(paid_for)}" if paid_for else "First payment"


def payments_due(session: Session, subscription: Subscription, cycle: Cycle) -> list[DuePayment]:
    """The billing's schedule from now: the retry of a failed payment, a plan's instalments left, or
    a subscription's next renewals (until a pending cancellation)."""
    at = cycle.next_charge_at
    if at is None:
        return []
    full = subscription.amount
    discounted = billing.period_amount(session, subscription)  # the coupon's price while its periods last
    if cycle.status == "past_due":
        return [DuePayment(at, discounted, subscription.currency, "Retry of the failed payment")]
    due, number = [], subscription.instalments_paid
    left = ((subscription.instalments_total or 0) - number if subscription.kind == "payment_plan"
            else RENEWALS_SHOWN)
    for i in range(max(left, 0)):
        if cycle.cancel_at is not None and at >= cycle.cancel_at:
            break
        amount = discounted if subscription.discounted_periods_left is None or i < subscription.discounted_periods_left \
            else full
        label = (f"Instalment {number + i + 1} of {subscription.instalments_total}"
                 if subscription.kind == "payment_plan" else "Renewal")
        due.append(DuePayment(at, amount, subscription.currency, label))
        at = cycle.terms.period_end(at)
    return due


# --- the timeline ---------------------------------------------------------------------------


def timeline(session: Session, checkout: CheckoutSession, order: list[Purchase], offers: dict[str, Offer],
             subscriptions: dict[str, Subscription], payments: list[Payment], refunds: list[Refund],
             disputes: list[Dispute]) -> list[Entry]:
    """Everything that happened to the order, newest first, with what is scheduled on top."""
    step = count()
    entries: list[Entry] = []

    def add(at, kind: str, title: str, detail: str = "", scheduled: bool = False) -> None:
        if at is not None:
            entries.append(Entry(as_utc(at), kind, title, detail, scheduled, next(step)))

    money = format_money
    by_id = {p.id: p for p in order}
    if checkout.status != GRANTED:
        tries = checkout.payment_tries
        add(checkout.created_at, "checkout", "Checkout started",
            f"{checkout.email} gave their email on the checkout of {_offer_name(offers, checkout.offer_id)}."
            + (f" {tries} payment tr{'y was' if tries == 1 else 'ies were'} declined before the payment." if tries else ""))
    recovery = session.exec(select(CheckoutRecovery).where(CheckoutRecovery.checkout_session_id == checkout.id,
                                                           CheckoutRecovery.abandoned.is_(True))).first()  # type: ignore[attr-defined]
    if recovery is not None:
        add(recovery.done_at or recovery.due_at, "abandoned", "Counted as abandoned",
            "Not paid within the store's recovery delay: the reminder email went out if the offer sends one.")
    for r in session.exec(select(ReturnedPayment).where(ReturnedPayment.checkout_session_id == checkout.id)).all():
        add(r.returned_at, "returned", f"Payment of {money(r.amount, r.currency or 'EUR')} given back",
            f"{r.reason} Refund: {r.status}{f' ({r.message})' if r.message else ''}.")
    first_payments = [p for p in payments if not p.subscription_id]
    for p in first_payments:
        if p.amount == 0:
            add(p.paid_at, "payment", "Card saved, nothing charged", f"{p.provider} {p.provider_payment_id}")
        else:
            add(p.paid_at, "payment", f"Paid {money(p.amount, p.currency)}",
                f"{_payment_label(p, order, offers, subscriptions)} · {p.provider} {p.provider_payment_id}")
    for p in order:
        role = purchase_role(p, by_id.get(p.parent_purchase_id or ""))
        name = _offer_name(offers, p.offer_id)
        if checkout.status == GRANTED:
            add(p.completed_at, "purchase", f"Granted {name}", "The seller added the customer by hand with this offer.")
        else:
            add(p.completed_at, "purchase", f"Bought {name}" + (f" ({role})" if role else ""),
                f"{money(p.amount, p.currency)}" + (f" with the code {p.coupon_code}" if p.coupon_code else ""))
        subscription = subscriptions.get(p.subscription_id or "")
        if subscription is not None:
            detail = offer_terms(offers[p.offer_id]).describe() if p.offer_id in offers else ""
            if subscription.trial_end:
                detail += f"; free trial until {_day(subscription.trial_end)}"
            add(subscription.created_at, "subscription", f"{kind_name(subscription.kind).capitalize()} started", detail)
    renewals = [p for p in payments if p.subscription_id]
    for p in renewals:
        add(p.paid_at, "payment", f"Paid {money(p.amount, p.currency)}", _payment_label(p, order, offers, subscriptions))
    sub_ids = list(subscriptions)
    if sub_ids:
        for a in session.exec(select(ChargeAttempt).where(ChargeAttempt.subscription_id.in_(sub_ids),  # type: ignore[attr-defined]
                                                          ChargeAttempt.succeeded.is_(False))).all():  # type: ignore[attr-defined]
            retry = f" Next try on {_day(a.next_retry_at)}." if a.next_retry_at else " No more retries."
            add(a.attempted_at, "payment_failed", f"Payment of {money(a.amount, a.currency)} failed",
                f"{a.message or 'Declined.'}{retry}")
    for r in refunds:
        by = "the seller" if r.actor == "seller" else ACTORS.get(r.actor, r.actor)
        add(r.refunded_at, "refund", f"Refunded {money(r.amount, r.currency)}",
            f"{_offer_name(offers, by_id[r.purchase_id].offer_id)}, by {by}" + (f": {r.reason}" if r.reason else ""))
    for d in disputes:
        add(d.opened_at, "dispute", f"Dispute opened on {money(d.amount, d.currency)}", d.reason or "")
        if d.closed_at:
            add(d.closed_at, "dispute", f"Dispute {d.status}",
                "The money stays." if d.status == "won" else "The money is gone.")
    _events(session, order, subscriptions, add)
    for p in order:  # what entitlements and notifications told of it: access, emails
        for h in happenings.of_purchase(session, p.id):
            add(h.at, h.kind, ELSEWHERE.get(h.kind, h.kind.replace("_", " ").capitalize()), h.summary)
    if sub_ids:
        _scheduled(session, subscriptions, add)
    return sorted(entries, key=lambda e: (e.scheduled, e.at, e.order), reverse=True)


def _outbox_events(session: Session, customer_id: str) -> list:
    """The events checkout published about the customer (keyed by customer id), newest first."""
    rows = session.exec(select(OutboxMessage).where(
        OutboxMessage.key == customer_id,
        OutboxMessage.topic.in_([topics.PURCHASES.name, topics.SUBSCRIPTIONS.name]))  # type: ignore[attr-defined]
        .order_by(OutboxMessage.id.desc()).limit(MAX_OUTBOX_EVENTS)).all()  # type: ignore[union-attr]
    events = []
    for row in rows:
        try:
            events.append(decode(json.loads(row.headers), row.value))
        except (DecodeError, ValueError):
            continue  # an event type this version does not know: not part of the story it tells
    return events


def _events(session: Session, order: list[Purchase], subscriptions: dict[str, Subscription], add) -> None:
    """The steps only the outbox keeps: upsell decisions and the billing's transitions."""
    purchase_ids = {p.id for p in order}
    customers = {p.customer_id for p in order}
    for customer_id in customers:
        for e in reversed(_outbox_events(session, customer_id)):
            if isinstance(e, UpsellDeclined) and e.purchase_id in purchase_ids:
                add(e.declined_at, "upsell_declined", f"Upsell declined: {e.offer_name}")
            if not isinstance(e, TRANSITIONS) or e.subscription_id not in subscriptions:
                continue
            name = kind_name(e.billing)
            if isinstance(e, SubscriptionCancellationScheduled):
                add(e.scheduled_at, "cancellation", "Cancellation scheduled",
                    f"The {name} ends on {_day(e.effective_at)}; asked by {ACTORS[e.actor]}"
                    + (f": {e.reason}" if e.reason else "."))
            elif isinstance(e, SubscriptionCancellationUndone):
                add(e.undone_at, "cancellation", "Cancellation undone", f"By {ACTORS[e.actor]}: the {name} goes on.")
            elif isinstance(e, SubscriptionCancelled):
                add(e.cancelled_at, "cancellation", f"{name.capitalize()} cancelled",
                    f"Ended on {_day(e.effective_at)} by {ACTORS[e.actor]}" + (f": {e.reason}" if e.reason else "."))
            elif isinstance(e, SubscriptionPaused):
                add(e.paused_at, "pause", f"{name.capitalize()} paused", f"By {ACTORS[e.actor]}: no payments are taken.")
            elif isinstance(e, SubscriptionResumed):
                add(e.resumed_at, "pause", f"{name.capitalize()} resumed", f"By {ACTORS[e.actor]}.")
            elif isinstance(e, SubscriptionPastDue):
                add(e.since, "past_due", "Past due",
                    f"Retries run until {_day(e.grace_until)}." if e.grace_until else "No retries are left.")
            elif isinstance(e, CardExpiring):
                add(e.noticed_at, "card", "Card expiring: customer warned",
                    f"{e.card_brand or 'Card'} ending {e.card_last4} expires {e.card_exp_month:02d}/{e.card_exp_year}, "
                    f"before the payment of {_day(e.next_payment_at)}.")


def _scheduled(session: Session, subscriptions: dict[str, Subscription], add) -> None:
    """What the schedulers will do next: a renewal, instalment, retry or cancellation; a card check."""
    for job in session.exec(select(BillingJob).where(BillingJob.subscription_id.in_(list(subscriptions)),  # type: ignore[attr-defined]
                                                     BillingJob.done_at.is_(None))).all():  # type: ignore[union-attr]
        subscription = subscriptions[job.subscription_id]
        cycle = billing.cycle_of(session, subscription)
        name = kind_name(subscription.kind)
        if cycle.cancel_at is not None and as_utc(job.due_at) >= cycle.cancel_at:
            title = f"The {name} ends"
        elif cycle.status == "past_due":
            title = "Retry of the failed payment"
        elif subscription.kind == "payment_plan":
            title = f"Instalment {subscription.instalments_paid + 1} of {subscription.instalments_total} due"
        else:
            title = "Renewal due"
        add(job.due_at, "scheduled", title, f"Scheduled for {_day(job.due_at)}.", scheduled=True)
    for check in session.exec(select(CardExpiryCheck).where(
            CardExpiryCheck.subscription_id.in_(list(subscriptions)), CardExpiryCheck.done_at.is_(None))).all():  # type: ignore[attr-defined,union-attr]
        add(check.due_at, "scheduled", "Saved card check",
            "The saved card is read, and the customer warned before it expires.", scheduled=True)
