"""The seller's manual changes of a customer's access: grants, revocations and download limits;
billing is never touched. Each runs inside the caller's transaction and never commits, and goes
through the same policy and ledger as every other change (`changes.py`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from postsale.entitlements.adapters.tables import AccessFact, Customer, Grant, Product
from postsale.entitlements.changes import (Cause, apply_policy, domain_fact, lock_customer, new_id,
                                           record_change)
from postsale.entitlements.domain.access import GRANTED_BY_SELLER, Policy
from postsale.entitlements.products import UnknownProduct
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.web import normalize_email


class UnknownGrant(LookupError):
    pass


class EmailNeeded(ValueError):
    """A manual grant to a customer entitlements has never seen: their email must be given."""


class EmailMismatch(ValueError):
    pass


class EndInThePast(ValueError):
    pass


def grant_by_seller(session: Session, *, customer_id: str, product_id: str, days: int | None = None,
                    expires_at: datetime | None = None, note: str | None = None, email: str | None = None,
                    download_limit: int | None = None, actor_id: str | None = None,
                    now: datetime | None = None) -> Grant:
    """The seller gives a customer a product, for good, for `days` or until `expires_at`; billing is
    not touched. Published as `AccessGranted`, with `actor_id` (the staff member) when given. The
    customer's email is the one entitlements knows from their purchases; one it does not know
    needs `email`."""
    now = now or utcnow()
    if expires_at is not None and as_utc(expires_at) <= now:
        raise EndInThePast(f"expires_at {expires_at.isoformat()} is not in the future")
    product = session.get(Product, product_id)
    if product is None:
        raise UnknownProduct(product_id)
    known = session.get(Customer, customer_id)
    if known is None and not email:
        raise EmailNeeded(f"customer {customer_id} has bought nothing here yet: give their email")
    if known is not None and email and normalize_email(email) != normalize_email(known.email):
        raise EmailMismatch(f"customer {customer_id} has the email {known.email}, not {email}")
    customer = lock_customer(session, customer_id, email if known is None else None)
    expires_at = as_utc(expires_at) if expires_at is not None else Policy(access_days=days).expires_at(now)
    grant = Grant(id=new_id("grant"), customer_id=customer_id, product_id=product_id, product_name=product.name,
                  delivery_type=product.delivery_type, source="seller", status="active", reason=GRANTED_BY_SELLER,
                  granted_at=now, expires_at=expires_at, changed_at=now, last_seq=0, note=note,
                  download_limit=download_limit)
    cause = Cause("seller", note=note, actor_id=actor_id)
    record_change(session, customer, grant, "grant", GRANTED_BY_SELLER, cause, now)
    apply_policy(session, customer, [grant], now)  # schedules the end of its days
    return grant


def revoke_by_seller(session: Session, *, customer_id: str, grant_id: str, note: str | None = None,
                     effective_at: datetime | None = None, actor_id: str | None = None,
                     now: datetime | None = None) -> Grant:
    """The seller (the staff member `actor_id`, when given) takes one grant back (a purchase's or
    their own), now or as of `effective_at`; billing is not touched and the customer's other grants
    of the product stay. Revoking a grant already revoked (or to be revoked sooner) changes nothing."""
    now = now or utcnow()
    effective_at = as_utc(effective_at) if effective_at is not None and as_utc(effective_at) > now else None
    grant = session.get(Grant, grant_id)
    if grant is None or grant.customer_id != customer_id:
        raise UnknownGrant(grant_id)
    customer = lock_customer(session, customer_id)
    session.refresh(grant)
    earlier = session.exec(select(AccessFact).where(AccessFact.grant_id == grant_id,
                                                    AccessFact.kind == "seller_revoke")).all()
    if any(f.effective_at is None or (effective_at is not None and as_utc(f.effective_at) <= effective_at)
           for f in earlier):
        return grant
    cause = Cause("seller", note=note, actor_id=actor_id)
    fact = AccessFact(id=new_id("fact"), grant_id=grant_id, kind="seller_revoke", occurred_at=now, actor="seller",
                      actor_id=actor_id, effective_at=effective_at, note=note, recorded_at=now)
    session.add(fact)
    apply_policy(session, customer, [grant], now, cause=cause, trigger=domain_fact(fact))
    return grant


def revoke_product_by_seller(session: Session, *, customer_id: str, product_id: str, note: str | None = None,
                             effective_at: datetime | None = None, now: datetime | None = None) -> list[Grant]:
    """The seller takes a product back from a customer: every grant of it that still gives or may
    give it, now or as of `effective_at`; billing is not touched. Raises UnknownGrant when the
    customer never had the product."""
    now = now or utcnow()
    grants = session.exec(select(Grant).where(Grant.customer_id == customer_id, Grant.product_id == product_id)
                          .order_by(Grant.granted_at, Grant.id)).all()
    if not grants:
        raise UnknownGrant(f"customer {customer_id} has no grant of {product_id}")
    for grant in grants:
        if grant.status in ("active", "suspended"):
            revoke_by_seller(session, customer_id=customer_id, grant_id=grant.id, note=note,
                             effective_at=effective_at, now=now)
    return list(grants)


def set_download_limit(session: Session, *, customer_id: str, grant_id: str, download_limit: int | None) -> Grant:
    """Gives one grant a download limit of its own (None: the product's again)."""
    grant = session.get(Grant, grant_id)
    if grant is None or grant.customer_id != customer_id:
        raise UnknownGrant(grant_id)
    grant.download_limit = download_limit
    session.add(grant)
    return grant
