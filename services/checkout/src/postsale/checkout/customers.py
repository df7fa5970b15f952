"""What checkout does with accounts' customer events: who has an account (so a returning buyer
logs in first), the offers a seller grants to a customer added by hand, and a changed email.

Each runs inside the consumer's transaction and never commits; each is safe to redeliver.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import update
from sqlmodel import Session, select

from postsale.checkout.adapters.tables import CatalogProduct, CheckoutSession, Customer, Offer, Purchase
from postsale.checkout.config import SERVICE
from postsale.checkout.offers import offers_by_id
from postsale.contracts import (
    AccessPolicy,
    AccountActivated,
    CustomerEmailChanged,
    CustomerRegistered,
    Money,
    PurchaseCompleted,
    PurchasedProduct,
    delivery_fields,
)
from postsale.runtime.messaging import publish_later

log = logging.getLogger(__name__)
SOURCE = f"/postsale/{SERVICE}"
GRANTED = "granted"  # the status of the attempt that holds a seller's grants: no buyer page opens it


def remember_customer(session: Session, event: CustomerRegistered | AccountActivated, event_id: str) -> None:
    """Started by accounts' customer events: who has an account, so returning buyers log in first.
    A customer the seller added with offers gets them as purchases without payment."""
    customer = session.get(Customer, event.email)
    if customer is None:
        customer = Customer(email=event.email, customer_id=event.customer_id)
    if isinstance(event, AccountActivated):
        customer.has_account = True
    session.add(customer)
    if isinstance(event, CustomerRegistered) and event.source == "seller" and event.offer_ids:
        grant_offers(session, event)


def grant_offers(session: Session, event: CustomerRegistered) -> list[Purchase]:
    """The seller added a customer by hand with offers: one zero-amount purchase per offer (provider
    `none`, nothing charged), each published as `PurchaseCompleted` so that entitlements grants it.

    Accounts has sent the welcome email with the login information already, so these purchases ask
    for no setup link and no purchase confirmation. The grants share one attempt whose id derives
    from the customer, so a redelivered event meets the attempt's primary key and the purchases'
    unique (attempt, offer): never a second purchase.
    """
    offers = offers_by_id(session, event.offer_ids)
    unknown = [offer_id for offer_id in event.offer_ids if offer_id not in offers]
    if unknown:
        log.warning("customer %s: the seller granted unknown offer(s) %s; skipped", event.customer_id,
                    ", ".join(unknown))
    granted = [offers[offer_id] for offer_id in dict.fromkeys(event.offer_ids) if offer_id in offers]
    if not granted:
        return []
    attempt_id = f"grant_{uuid.uuid5(uuid.NAMESPACE_URL, f'seller-grant:{event.customer_id}').hex}"
    attempt = session.get(CheckoutSession, attempt_id)
    if attempt is None:
        attempt = CheckoutSession(id=attempt_id, offer_id=granted[0].id, email=event.email, status=GRANTED,
                                  provider="none", created_at=event.registered_at)
        session.add(attempt)
        session.flush()
    done = set(session.exec(select(Purchase.offer_id).where(Purchase.checkout_session_id == attempt_id)).all())
    return [_grant(session, attempt, offer, event) for offer in granted if offer.id not in done]


def _grant(session: Session, attempt: CheckoutSession, offer: Offer, event: CustomerRegistered) -> Purchase:
    purchase = Purchase(id=f"pur_{uuid.uuid4().hex[:16]}", checkout_session_id=attempt.id, customer_id=event.customer_id,
                        email=event.email, offer_id=offer.id, amount=0, currency=offer.currency, provider="none",
                        provider_payment_id="", completed_at=event.registered_at)
    session.add(purchase)
    products = [p for p in (session.get(CatalogProduct, pid) for pid in offer.product_ids) if p is not None]
    publish_later(session, PurchaseCompleted(
        purchase_id=purchase.id, customer_id=event.customer_id, email=event.email, offer_id=offer.id,
        offer_name=offer.name,
        products=[PurchasedProduct(product_id=p.id, name=p.name, **delivery_fields(p.delivery_type)) for p in products],
        amount=Money(amount=0, currency=offer.currency), provider="none", provider_payment_id="",
        completed_at=event.registered_at, new_customer=False, send_confirmation_email=False,
        send_account_setup_email=False, access_policy=AccessPolicy(**offer.access_policy)), source=SOURCE)
    return purchase


def follow_email_change(session: Session, event: CustomerEmailChanged, _event_id: str) -> None:
    """Started by `CustomerEmailChanged`: the customer's records move to the new address, so a buyer
    with the new email is the returning customer (who logs in first) and the old address is no one's."""
    current = session.exec(select(Customer).where(Customer.customer_id == event.customer_id)).first()
    taken = session.get(Customer, event.new_email)
    if taken is not None and taken.customer_id != event.customer_id:
        log.error("customer %s changed email to %s, which checkout knows as customer %s; not moved",
                  event.customer_id, event.new_email, taken.customer_id)
        return
    if current is not None and current.email != event.new_email:
        has_account = current.has_account
        session.delete(current)
        session.flush()  # the email is the key: the old row goes before the new one comes
        session.add(Customer(email=event.new_email, customer_id=event.customer_id, has_account=has_account))
    elif current is None:
        # Only accounts knew the customer so far; a changed email means a login that works.
        session.add(Customer(email=event.new_email, customer_id=event.customer_id, has_account=True))
    session.exec(update(Purchase).where(Purchase.customer_id == event.customer_id)  # type: ignore[call-overload]
                 .values(email=event.new_email))
