"""Checkout use cases. Each runs inside the caller's transaction and never commits.

Calls to the payment provider happen in the entrypoints, between transactions; the use cases
here record what the provider answered, and publish what follows from it.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from postsale.checkout import billing, card_expiry, returns
from postsale.checkout.attempt_lock import hold_attempt
from postsale.checkout.adapters.payments.port import PaymentResult
from postsale.checkout.adapters.tables import (
    CatalogProduct,
    Cart,
    CheckoutRecovery,
    CheckoutSession,
    Coupon,
    CouponRedemption,
    Customer,
    Offer,
    Payment,
    ProviderEvent,
    Purchase,
    Subscription,
)
from postsale.checkout.config import SERVICE
from postsale.checkout.domain import funnel
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.coupons import normalize_code, redeem_problem
from postsale.checkout.domain.money import format_money
from postsale.checkout.domain.post_purchase import PostPurchase
from postsale.checkout.domain.quote import Quote, make_quote
from postsale.checkout.domain.setup_tokens import setup_token, token_sha256
from postsale.checkout.errors import CheckoutError, PaymentMismatch
from postsale.checkout.offers import offers_by_id, store_settings
from postsale.checkout.records import coupon_rules, offer_funnel, offer_terms, post_purchase_of
from postsale.contracts import (
    AccessPolicy,
    delivery_fields,
    Money,
    PurchaseCompleted,
    PurchasedProduct,
    UpsellDeclined,
)
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.scheduler import end_pending

SOURCE = f"/postsale/{SERVICE}"
FIRST_PAYMENT = "checkout"
RECOVERY_SCHEDULER = "checkout-recovery-scheduler"


# --- the buyer's attempt --------------------------------------------------------------------


def start_checkout(session: Session, *, offer: Offer, email: str, cart: Cart | None = None,
                   now: datetime | None = None) -> CheckoutSession:
    """The buyer gave an email: an attempt opens, and counts as abandoned if it is not paid within
    the store's recovery delay (a `CheckoutRecovery` row; paying drops it)."""
    # The id is a bearer secret held only by the buyer's browser: it derives the setup token.
    now = now or utcnow()
    customer = session.get(Customer, email)
    checkout = CheckoutSession(id=f"cs_{secrets.token_urlsafe(24)}", offer_id=offer.id,
                               cart_id=cart.id if cart else None, email=email,
                               bought_before=customer is not None and not customer.has_account, created_at=now)
    session.add(checkout)
    session.flush()  # the recovery row references the attempt
    delay = timedelta(minutes=store_settings(session).recovery_delay_minutes)
    # Not woken: the row is due a minute or more from now, and the scheduler looks at least twice a
    # minute (`Scheduler.poll_interval`), so it finds the row before then.
    session.add(CheckoutRecovery(id=f"cr_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, due_at=now + delay))
    return checkout


def customer_has_account(session: Session, email: str) -> bool:
    customer = session.get(Customer, email)
    return customer is not None and customer.has_account


def checkout_offers(session: Session, checkout: CheckoutSession, *, with_bump: bool | None = None) -> list[tuple[Offer, bool]]:
    """The offers this attempt buys, primary first, each with whether it is the order bump."""
    if checkout.cart_id:
        cart = session.get(Cart, checkout.cart_id)
        offers = offers_by_id(session, cart.offer_ids)
        return [(offers[offer_id], False) for offer_id in cart.offer_ids if offer_id in offers]
    primary = session.get(Offer, checkout.offer_id)
    items = [(primary, False)]
    bump = session.get(Offer, primary.order_bump_offer_id) if primary.order_bump_offer_id else None
    if bump is not None and (checkout.order_bump if with_bump is None else with_bump):
        items.append((bump, True))
    return items


def order_bump_of(session: Session, checkout: CheckoutSession) -> Offer | None:
    primary = session.get(Offer, checkout.offer_id)
    if checkout.cart_id or not primary.order_bump_offer_id:
        return None
    return session.get(Offer, primary.order_bump_offer_id)


def _coupon_by_code(session: Session, code: str) -> Coupon | None:
    return session.exec(select(Coupon).where(Coupon.code == normalize_code(code))).first()


def quote(session: Session, checkout: CheckoutSession, *, now: datetime | None = None) -> Quote:
    """What the attempt charges now, with its current choices. Raises CheckoutError when the
    coupon no longer applies (expired or used up since the buyer entered it)."""
    items = checkout_offers(session, checkout)
    coupon = None
    if checkout.coupon_code:
        coupon_row = _coupon_by_code(session, checkout.coupon_code)
        if coupon_row is None:
            raise CheckoutError(f"The code {checkout.coupon_code} does not exist.")
        rules = coupon_rules(coupon_row)
        if not _reserved(session, coupon_row, checkout):
            problem = redeem_problem(rules, offer_ids=[o.id for o, _ in items], currency=items[0][0].currency,
                                     now=now or utcnow(), redemptions=coupon_row.redemptions)
            if problem:
                raise CheckoutError(problem)
        coupon = rules
    return make_quote([(o.id, o.name, offer_terms(o), bump) for o, bump in items], coupon=coupon,
                      chosen_amount=checkout.chosen_amount)


def _reserved(session: Session, coupon: Coupon, checkout: CheckoutSession) -> bool:
    return session.exec(select(CouponRedemption).where(
        CouponRedemption.coupon_id == coupon.id, CouponRedemption.checkout_session_id == checkout.id)).first() is not None


def apply_coupon(session: Session, checkout: CheckoutSession, code: str, *, now: datetime | None = None) -> None:
    """The buyer entered a code (an empty one removes it). Raises CheckoutError with the reason
    a code cannot be used; the attempt then keeps no coupon."""
    if not code.strip():
        checkout.coupon_code = None
        session.add(checkout)
        return
    if len(code) > 40 or _coupon_by_code(session, code) is None:
        raise CheckoutError(f"The code {normalize_code(code)[:40]} does not exist.")
    checkout.coupon_code = normalize_code(code)
    quote(session, checkout, now=now)  # raises when the code does not apply
    session.add(checkout)


def reserve_coupon(session: Session, checkout: CheckoutSession) -> None:
    """Counts the attempt's coupon before the charge, so two buyers racing for the last
    redemption cannot both pay the discounted price. Safe to repeat for one attempt."""
    if not checkout.coupon_code:
        return
    coupon = _coupon_by_code(session, checkout.coupon_code)
    if coupon is None or _reserved(session, coupon, checkout):
        return
    counted = session.exec(  # type: ignore[call-overload]
        update(Coupon).where(Coupon.id == coupon.id)
        .where((Coupon.max_redemptions.is_(None)) | (Coupon.redemptions < Coupon.max_redemptions))  # type: ignore[union-attr,operator]
        .values(redemptions=Coupon.redemptions + 1)
    )
    if counted.rowcount != 1:
        raise CheckoutError(f"The code {coupon.code} has been used up.")
    session.add(CouponRedemption(coupon_id=coupon.id, checkout_session_id=checkout.id))


def release_coupon(session: Session, checkout: CheckoutSession) -> None:
    """The payment was declined: the redemption it held is free again."""
    if not checkout.coupon_code:
        return
    coupon = _coupon_by_code(session, checkout.coupon_code)
    held = session.exec(select(CouponRedemption).where(
        CouponRedemption.coupon_id == coupon.id, CouponRedemption.checkout_session_id == checkout.id)).first() if coupon else None
    if held is None:
        return
    session.delete(held)
    session.exec(update(Coupon).where(Coupon.id == coupon.id).values(redemptions=Coupon.redemptions - 1))  # type: ignore[call-overload]


def owned_product_ids(session: Session, email: str) -> set[str]:
    """The products this email's purchases granted."""
    offer_ids = list(session.exec(select(Purchase.offer_id).where(Purchase.email == email)).all())
    return {p for offer in offers_by_id(session, offer_ids).values() for p in offer.product_ids}


def payment_idempotency_key(checkout: CheckoutSession, amount: int, currency: str) -> str:
    """One key per try and amount: a double click repeats the key (one charge); a new try after a
    decline, or a changed total, is a new payment at the provider."""
    return f"{checkout.id}:pay:{checkout.payment_tries}:{amount}:{currency}"


def record_decline(session: Session, checkout: CheckoutSession, message: str | None) -> None:
    checkout.last_error = message
    checkout.payment_tries += 1
    release_coupon(session, checkout)
    session.add(checkout)


def _honour_paid_coupon(session: Session, checkout: CheckoutSession) -> None:
    """The buyer paid the discounted price after the attempt was abandoned, and its redemption
    released, and the code was used up meanwhile: the money taken is honoured, and the redemption
    recorded without counting against the limit."""
    coupon = _coupon_by_code(session, checkout.coupon_code or "")
    if coupon is not None and not _reserved(session, coupon, checkout):
        session.add(CouponRedemption(coupon_id=coupon.id, checkout_session_id=checkout.id))


def _drop_recovery(session: Session, checkout: CheckoutSession, now: datetime) -> None:
    """A paid attempt is never abandoned: its recovery row is done. One the scheduler holds is left
    to its run, which waits for this payment to commit and then finds the attempt paid (waiting for
    that row here, while holding the attempt the run waits for, would deadlock)."""
    end_pending(session, CheckoutRecovery, CheckoutRecovery.checkout_session_id == checkout.id, now=now,
                skip_locked=True)


def _order_id(checkout: CheckoutSession, step: str) -> str:
    # Derived, never the checkout id itself: that is the buyer's bearer secret, and orders are public.
    return f"ord_{uuid.uuid5(uuid.NAMESPACE_URL, f'{checkout.id}:{step}').hex[:16]}"


def _customer(session: Session, email: str) -> Customer:
    customer = session.get(Customer, email)
    if customer is None:
        customer = Customer(email=email, customer_id=f"cus_{uuid.uuid4().hex[:16]}")
        session.add(customer)
    return customer


def after_setup_url(urls, checkout: CheckoutSession, settings: PostPurchase, purchase_id: str) -> str | None:
    """Where a new customer goes once the account is set up; None: the library."""
    if settings.destination == "landing_page":
        return settings.landing_page_url
    if settings.destination == "thank_you":
        return f"{urls.checkout_url}/purchases/{purchase_id}/thank-you"
    return None


def post_purchase_settings(session: Session, checkout: CheckoutSession) -> PostPurchase:
    """The cart's settings override its offers'; with upsells, the primary offer's settings rule."""
    if checkout.cart_id:
        return post_purchase_of(session.get(Cart, checkout.cart_id).post_purchase)
    return post_purchase_of(session.get(Offer, checkout.offer_id).post_purchase)


def complete_first_payment(session: Session, checkout: CheckoutSession, *, provider: str, result: PaymentResult,
                           secret_key: str, urls, now: datetime | None = None) -> list[Purchase]:
    """The first payment of `checkout` succeeded (or nothing was due): one purchase per offer
    bought, each publishing `PurchaseCompleted`; subscriptions and payment plans start.

    Safe to repeat: a paid attempt returns its purchases and publishes nothing more. Raises
    PaymentMismatch when the provider's amount or currency is not what the attempt charges, or the
    payment was given back before (the caller gives the payment back: `returns`).
    """
    hold_attempt(session, checkout)  # an abandonment run at the same moment waits, or is waited for
    if checkout.status == "paid":
        return purchases_of(session, checkout)
    if result.payment_id and returns.returned_payment(session, provider, result.payment_id) is not None:
        # Given back once, it buys nothing ever, whatever amount a later event about it names.
        raise PaymentMismatch(f"The payment {result.payment_id} was given back already.")
    now = now or utcnow()
    the_quote = quote(session, checkout, now=now) if checkout.amount_due is None else None
    due = checkout.amount_due if checkout.amount_due is not None else the_quote.total
    items = checkout_offers(session, checkout)
    currency = items[0][0].currency
    if result.payment_id and (result.amount, result.currency and result.currency.upper()) != (due, currency):
        paid = format_money(result.amount or 0, (result.currency or "").upper()) if result.currency else result.amount
        raise PaymentMismatch(f"The payment {result.payment_id} is for {paid}, "
                              f"not the {format_money(due, currency)} this checkout charges now.")
    try:
        reserve_coupon(session, checkout)
    except CheckoutError:
        if not result.payment_id:
            raise
        _honour_paid_coupon(session, checkout)
    the_quote = the_quote or quote(session, checkout, now=now)
    customer = _customer(session, checkout.email)
    payment = None
    if result.payment_id:
        payment = Payment(id=f"pay_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, step=FIRST_PAYMENT,
                          amount=due, currency=currency, provider=provider, provider_payment_id=result.payment_id,
                          paid_at=now)
        session.add(payment)
    settings = post_purchase_settings(session, checkout)
    order_id = _order_id(checkout, FIRST_PAYMENT)
    purchases = []
    primary_id = None
    for (offer, is_bump), line in zip(items, the_quote.lines):
        purchase = _record_purchase(
            session, checkout, offer, customer, amount=line.due_now, payment=payment, provider=provider,
            result=result, order_id=order_id, parent_purchase_id=primary_id if is_bump else None,
            coupon_code=checkout.coupon_code if line.discount else None, now=now, first=primary_id is None,
            secret_key=secret_key, settings=settings, urls=urls,
        )
        primary_id = primary_id or purchase.id
        purchases.append(purchase)
    if payment is not None:
        billing.replay_waiting_events(session, payment.provider_payment_id, provider=provider, now=now)
    checkout.status = "paid"
    checkout.provider = provider
    checkout.provider_payment_id = result.payment_id
    checkout.payment_method_id = result.payment_method_id
    checkout.customer_ref = result.customer_ref
    checkout.last_error = None
    position = None if checkout.cart_id else funnel.start(offer_funnel(items[0][0]))
    checkout.funnel_step = position.step if position else None
    checkout.funnel_downsell = False
    session.add(checkout)
    _drop_recovery(session, checkout, now)  # last: its flush writes the attempt's changes in one UPDATE
    return purchases


def _record_purchase(session: Session, checkout: CheckoutSession, offer: Offer, customer: Customer, *, amount: int,
                     payment: Payment | None, provider: str, result: PaymentResult, order_id: str,
                     parent_purchase_id: str | None, coupon_code: str | None, now: datetime, first: bool,
                     secret_key: str, settings: PostPurchase, urls) -> Purchase:
    purchase = Purchase(
        id=f"pur_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, payment_id=payment.id if payment else None,
        parent_purchase_id=parent_purchase_id, customer_id=customer.customer_id, email=checkout.email,
        offer_id=offer.id, amount=amount, currency=offer.currency, coupon_code=coupon_code,
        provider=provider if payment else "none", provider_payment_id=payment.provider_payment_id if payment else "",
        completed_at=now,
    )
    session.add(purchase)
    session.flush()  # the subscription references the purchase
    terms = offer_terms(offer)
    subscription = _start_billing(session, purchase, terms, checkout, result, provider, now) if terms.recurring else None
    purchase.subscription_id = subscription.id if subscription else None
    # Only the attempt's first purchase sets up the account: one setup link, one welcome email.
    new_account = first and not customer.has_account
    products = [session.get(CatalogProduct, pid) for pid in offer.product_ids]
    publish_later(
        session,
        PurchaseCompleted(
            purchase_id=purchase.id, customer_id=customer.customer_id, email=checkout.email,
            offer_id=offer.id, offer_name=offer.name,
            products=[PurchasedProduct(product_id=p.id, name=p.name, **delivery_fields(p.delivery_type))
                      for p in products if p is not None],
            amount=Money(amount=amount, currency=offer.currency),
            provider=purchase.provider, provider_payment_id=purchase.provider_payment_id,
            completed_at=now, order_id=order_id, coupon_code=coupon_code,
            parent_purchase_id=parent_purchase_id, subscription_id=purchase.subscription_id,
            trial_ends_at=subscription.trial_end if subscription else None,
            next_payment_at=subscription.current_period_end if subscription else None,
            new_customer=not customer.has_account,
            # Sent for an email that bought before too: accounts then shows that browser the
            # page that asks to prove the email, instead of setting the account up.
            account_setup_token_sha256=token_sha256(setup_token(secret_key, checkout.id)) if new_account else None,
            send_confirmation_email=offer.send_confirmation_email,
            access_policy=AccessPolicy(**offer.access_policy),
            send_account_setup_email=new_account and (settings.send_welcome_email or not settings.skips_account_page),
            after_setup_url=after_setup_url(urls, checkout, settings, purchase.id) if first else None,
        ),
        source=SOURCE,
    )
    return purchase


def _start_billing(session: Session, purchase: Purchase, terms: BillingTerms, checkout: CheckoutSession,
                   result: PaymentResult, provider: str, now: datetime) -> Subscription:
    """The subscription or payment plan a purchase starts; its renewals are charged later."""
    trial_end = terms.trial_end(now)
    coupon = _coupon_by_code(session, checkout.coupon_code) if purchase.coupon_code else None
    periods = coupon_rules(coupon).periods() if coupon else None
    subscription = Subscription(
        id=f"sub_{uuid.uuid4().hex[:16]}", purchase_id=purchase.id, customer_id=purchase.customer_id,
        offer_id=purchase.offer_id, kind=terms.type, status="trialing" if trial_end else "active",
        amount=terms.amount, currency=terms.currency, interval=terms.interval or "month",
        interval_count=terms.interval_count, instalments_total=terms.instalments,
        instalments_paid=1 if terms.type == "payment_plan" else 0, coupon_code=purchase.coupon_code,
        discounted_periods_left=None if periods is None else periods - (0 if trial_end else 1),
        provider=provider, payment_method_id=result.payment_method_id, customer_ref=result.customer_ref,
        trial_end=trial_end, current_period_start=now, current_period_end=trial_end or terms.period_end(now),
    )
    session.add(subscription)
    session.flush()
    billing.store(session, subscription, billing.cycle_of(session, subscription), now)  # the first renewal's job
    card_expiry.watch_card(session, subscription, now)
    return subscription


def purchases_of(session: Session, checkout: CheckoutSession) -> list[Purchase]:
    """The attempt's purchases in the order they were made; of those one payment made at once, the
    offer the buyer came for first, then its order bumps."""
    made = session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id)).all()
    return sorted(made, key=lambda p: (as_utc(p.completed_at), p.offer_id != checkout.offer_id, p.id))


def primary_purchase(session: Session, checkout: CheckoutSession) -> Purchase:
    return session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id,
                                               Purchase.offer_id == checkout.offer_id)).one()


# --- the upsell funnel ----------------------------------------------------------------------


def funnel_position(checkout: CheckoutSession) -> funnel.Position | None:
    if checkout.status != "paid" or checkout.funnel_step is None:
        return None
    return funnel.Position(checkout.funnel_step, checkout.funnel_downsell)


def current_upsell(session: Session, checkout: CheckoutSession) -> Offer | None:
    position = funnel_position(checkout)
    if position is None:
        return None
    return session.get(Offer, funnel.offer_at(offer_funnel(session.get(Offer, checkout.offer_id)), position))


def position_token(checkout: CheckoutSession) -> str:
    """Names the upsell page the buyer saw, so a stale tab or a double click acts on nothing else."""
    return f"{checkout.funnel_step}:{'down' if checkout.funnel_downsell else 'up'}"


def move_funnel(session: Session, checkout: CheckoutSession, *, accepted: bool) -> None:
    steps = offer_funnel(session.get(Offer, checkout.offer_id))
    position = funnel.next_position(steps, funnel_position(checkout), accepted=accepted)
    checkout.funnel_step = position.step if position else None
    checkout.funnel_downsell = bool(position and position.downsell)
    session.add(checkout)


def decline_upsell(session: Session, checkout: CheckoutSession, offer: Offer, *, position: str,
                   now: datetime | None = None) -> None:
    """The buyer said no to the upsell or downsell at `position` (the page's token): the funnel moves
    on, and `UpsellDeclined` tells the follow-ups. Once per step: the attempt's row is held, and a
    second click that finds the funnel moved on does nothing."""
    hold_attempt(session, checkout)
    if position != position_token(checkout):
        return
    purchase = primary_purchase(session, checkout)
    move_funnel(session, checkout, accepted=False)
    publish_later(session, UpsellDeclined(purchase_id=purchase.id, customer_id=purchase.customer_id,
                                          email=purchase.email, offer_id=offer.id, offer_name=offer.name,
                                          declined_at=now or utcnow()), source=SOURCE)


def upsell_idempotency_key(checkout: CheckoutSession, offer: Offer) -> str:
    return f"{checkout.id}:upsell:{offer.id}"


def complete_upsell(session: Session, checkout: CheckoutSession, offer: Offer, *, provider: str,
                    result: PaymentResult, urls, now: datetime | None = None) -> Purchase:
    """The buyer accepted an upsell and its off-session charge succeeded: a purchase of its own,
    with `parent_purchase_id` the attempt's first purchase. Safe to repeat for the same step."""
    existing = session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id,
                                                   Purchase.offer_id == offer.id)).first()
    if existing is not None:
        return existing
    now = now or utcnow()
    step = f"upsell:{offer.id}"
    payment = Payment(id=f"pay_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, step=step,
                      amount=offer.price_amount, currency=offer.currency, provider=provider,
                      provider_payment_id=result.payment_id or "", paid_at=now)
    session.add(payment)
    customer = _customer(session, checkout.email)
    purchase = _record_purchase(
        session, checkout, offer, customer, amount=offer.price_amount, payment=payment, provider=provider,
        result=result, order_id=_order_id(checkout, step), parent_purchase_id=primary_purchase(session, checkout).id,
        coupon_code=None, now=now, first=False, secret_key="",
        settings=post_purchase_settings(session, checkout), urls=urls,
    )
    move_funnel(session, checkout, accepted=True)
    billing.replay_waiting_events(session, payment.provider_payment_id, provider=provider, now=now)
    return purchase


# --- provider webhooks and read models ------------------------------------------------------


def record_provider_event(session: Session, *, source: str, external_id: str, type: str) -> ProviderEvent | None:
    """The new record of a provider event; None when it was already accepted (a repeated webhook)."""
    exists = session.exec(
        select(ProviderEvent).where(ProviderEvent.source == source, ProviderEvent.external_id == external_id)
    ).first()
    if exists is not None:
        return None
    event = ProviderEvent(source=source, external_id=external_id, type=type)
    session.add(event)
    return event
