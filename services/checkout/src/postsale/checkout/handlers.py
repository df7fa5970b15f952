"""Checkout use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

import secrets
import uuid
from sqlmodel import Session, select

from postsale.checkout.adapters.tables import (
    CatalogProduct,
    CheckoutSession,
    Customer,
    Offer,
    Purchase,
    ProviderEvent,
)
from postsale.checkout.config import SERVICE
from postsale.checkout.domain.setup_tokens import setup_token, token_sha256
from postsale.contracts import (
    AccountActivated,
    CustomerRegistered,
    Money,
    ProductPublished,
    PurchaseCompleted,
    PurchasedProduct,
)
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


class CheckoutError(ValueError):
    """A request checkout refuses, with a message for the person who made it."""


def create_offer(session: Session, *, name: str, amount: int, currency: str, product_ids: list[str],
                 send_confirmation_email: bool = True) -> Offer:
    known = set(session.exec(select(CatalogProduct.id).where(CatalogProduct.id.in_(product_ids))).all())  # type: ignore[attr-defined]
    unknown = [p for p in product_ids if p not in known]
    if unknown:
        raise CheckoutError(f"unknown product id(s): {', '.join(unknown)}")
    offer = Offer(id=f"offer_{uuid.uuid4().hex[:16]}", name=name, price_amount=amount, currency=currency.upper(),
                  product_ids=list(dict.fromkeys(product_ids)), send_confirmation_email=send_confirmation_email)
    session.add(offer)
    return offer


def start_checkout(session: Session, *, offer: Offer, email: str) -> CheckoutSession:
    # The id is a bearer secret held only by the buyer's browser: it derives the setup token.
    checkout = CheckoutSession(id=f"cs_{secrets.token_urlsafe(24)}", offer_id=offer.id, email=email)
    session.add(checkout)
    return checkout


def customer_has_account(session: Session, email: str) -> bool:
    customer = session.get(Customer, email)
    return customer is not None and customer.has_account


def complete_purchase(session: Session, checkout: CheckoutSession, *, provider: str, provider_payment_id: str,
                      secret_key: str) -> Purchase:
    """The payment of `checkout` succeeded: records the purchase and publishes `PurchaseCompleted`.

    Safe to repeat: a paid attempt returns its purchase and publishes nothing more.
    """
    if checkout.status == "paid":
        existing = session.exec(select(Purchase).where(Purchase.checkout_session_id == checkout.id)).one()
        return existing
    offer = session.get(Offer, checkout.offer_id)
    assert offer is not None, "a checkout session always references an existing offer"
    customer = session.get(Customer, checkout.email)
    if customer is None:
        customer = Customer(email=checkout.email, customer_id=f"cus_{uuid.uuid4().hex[:16]}")
        session.add(customer)
    purchase = Purchase(
        id=f"pur_{uuid.uuid4().hex[:16]}", checkout_session_id=checkout.id, customer_id=customer.customer_id,
        email=checkout.email, offer_id=offer.id, amount=offer.price_amount, currency=offer.currency,
        provider=provider, provider_payment_id=provider_payment_id,
    )
    session.add(purchase)
    checkout.status = "paid"
    checkout.provider = provider
    checkout.provider_payment_id = provider_payment_id
    checkout.last_error = None
    session.add(checkout)
    products = [session.get(CatalogProduct, pid) for pid in offer.product_ids]
    publish_later(
        session,
        PurchaseCompleted(
            purchase_id=purchase.id, customer_id=customer.customer_id, email=checkout.email,
            offer_id=offer.id, offer_name=offer.name,
            products=[PurchasedProduct(product_id=p.id, name=p.name, delivery_type=p.delivery_type)
                      for p in products if p is not None],
            amount=Money(amount=offer.price_amount, currency=offer.currency),
            provider=provider, provider_payment_id=provider_payment_id,
            completed_at=purchase.completed_at,
            new_customer=not customer.has_account,
            account_setup_token_sha256=None if customer.has_account
            else token_sha256(setup_token(secret_key, checkout.id)),
            send_confirmation_email=offer.send_confirmation_email,
        ),
        source=SOURCE,
    )
    return purchase


def record_provider_event(session: Session, *, source: str, external_id: str, type: str) -> bool:
    """False when this provider event was already accepted (a repeated webhook)."""
    exists = session.exec(
        select(ProviderEvent).where(ProviderEvent.source == source, ProviderEvent.external_id == external_id)
    ).first()
    if exists is not None:
        return False
    session.add(ProviderEvent(source=source, external_id=external_id, type=type))
    return True


def update_catalog(session: Session, event: ProductPublished, _event_id: str) -> None:
    """Started by `ProductPublished`: keeps the catalog read model current."""
    product = session.get(CatalogProduct, event.product_id) or CatalogProduct(id=event.product_id, name="", delivery_type="")
    product.name = event.name
    product.description = event.description
    product.delivery_type = event.delivery_type
    product.updated_at = utcnow()
    session.add(product)


def remember_customer(session: Session, event: CustomerRegistered | AccountActivated, _event_id: str) -> None:
    """Started by accounts' customer events: who has an account, so returning buyers log in first."""
    customer = session.get(Customer, event.email)
    if customer is None:
        customer = Customer(email=event.email, customer_id=event.customer_id)
    if isinstance(event, AccountActivated):
        customer.has_account = True
    session.add(customer)
