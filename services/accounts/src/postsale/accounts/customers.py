"""The seller's side of customers: adding one by hand, resending a link to one who cannot log in,
and what the seller sees of a customer (activation, last activity, account emails). Each use case
runs inside the caller's transaction and never commits."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import or_
from sqlmodel import Session, select

from postsale.accounts import activity
from postsale.accounts.adapters.tables import AccountEmail, Customer
from postsale.accounts.config import SERVICE
from postsale.accounts.handlers import AccountError, issue_setup_link
from postsale.accounts.login import customer_by_email, issue_login_link
from postsale.contracts import CustomerRegistered, EmailFailed, EmailSent
from postsale.runtime.clock import as_utc
from postsale.runtime.db import upsert
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"
# The emails of notifications that concern the account, shown to the seller.
ACCOUNT_TEMPLATES = frozenset({"account_setup", "login_link", "password_reset", "email_change",
                               "email_change_notice"})


class CustomerExists(AccountError):
    def __init__(self, customer: Customer) -> None:
        super().__init__(f"A customer with the email {customer.email} exists already: {customer.id}. To help them "
                         f"log in, resend the setup or login link.")
        self.customer = customer


def add_customer(session: Session, *, email: str, first_name: str, last_name: str,
                 offer_ids: list[str]) -> Customer:
    """The seller adds a customer by hand: a customer record (`CustomerRegistered`, source `seller`,
    with the offers to grant for checkout), and the welcome email with the login information: the
    email to log in with and a link that sets the password (`AccountSetupLinkIssued`, `added_by_seller`)."""
    existing = customer_by_email(session, email)
    if existing is not None:
        raise CustomerExists(existing)
    customer = Customer(id=f"cus_{uuid.uuid4().hex[:16]}", email=email, first_name=first_name.strip(),
                        last_name=last_name.strip(), source="seller",
                        requested_offer_ids=json.dumps(offer_ids) if offer_ids else None)
    session.add(customer)
    session.flush()
    publish_later(session, CustomerRegistered(customer_id=customer.id, email=email, first_name=customer.first_name,
                                              last_name=customer.last_name, source="seller", offer_ids=offer_ids,
                                              registered_at=customer.created_at), source=SOURCE)
    issue_setup_link(session, customer, purchase_id=None, after_setup_url=None, reason="added_by_seller")
    return customer


def resend_link(session: Session, customer: Customer) -> str:
    """For a customer who cannot log in: a new setup link when the account was never set up, else a
    login link with its code. Which one went: `setup_link` or `login_link`."""
    if customer.activated_at is None:
        reason = "added_by_seller" if customer.source == "seller" else "resend"
        issue_setup_link(session, customer, purchase_id=None, after_setup_url=None, reason=reason)
        return "setup_link"
    issue_login_link(session, customer, reason="seller")
    return "login_link"


def record_account_email(session: Session, event: EmailSent | EmailFailed, _event_id: str) -> None:
    """Started by notifications' `EmailSent` or `EmailFailed`: keeps the account emails of each
    customer, with whether the relay took them. Safe to redeliver; a later report wins."""
    if event.customer_id is None or event.template not in ACCOUNT_TEMPLATES:
        return
    sent = isinstance(event, EmailSent)
    row = AccountEmail(key=event.email_key, customer_id=event.customer_id, template=event.template, to=event.to,
                       status="sent" if sent else "failed", happened_at=event.sent_at if sent else event.failed_at,
                       error=None if sent else event.error[:500], attempts=None if sent else event.attempts)
    upsert(session, row, ("status", "happened_at", "error") if sent else ("status", "happened_at", "error", "attempts"))


def customer_view(session: Session, customer: Customer) -> dict:
    """What the seller sees of a customer."""
    last = activity.last_activity(session, customer)
    emails = session.exec(select(AccountEmail).where(AccountEmail.customer_id == customer.id)
                          .order_by(AccountEmail.happened_at.desc())).all()
    return {
        "id": customer.id, "email": customer.email, "first_name": customer.first_name,
        "last_name": customer.last_name, "source": customer.source, "created_at": as_utc(customer.created_at),
        "activated": customer.activated_at is not None, "activated_at": as_utc(customer.activated_at),
        "has_password": customer.password_hash is not None,
        "requested_offer_ids": json.loads(customer.requested_offer_ids) if customer.requested_offer_ids else [],
        "last_activity_at": max((t for t in last.values() if t), default=None),
        "last_activity": last,
        "account_emails": [{"key": e.key, "template": e.template, "to": e.to, "status": e.status,
                            "relay_accepted": e.status == "sent", "at": as_utc(e.happened_at),
                            "attempts": e.attempts, "error": e.error} for e in emails],
    }


PAGE_SIZE = 25


def search(session: Session, text: str = "", page: int = 1) -> tuple[list[Customer], bool]:
    """Customers whose email or name contains `text` (all when empty), newest first, a page of
    `PAGE_SIZE` at a time; and whether another page follows."""
    query = select(Customer)
    text = text.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Customer.email.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
                                Customer.first_name.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
                                Customer.last_name.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
                                (Customer.first_name + " " + Customer.last_name).ilike(pattern, escape="\\")))
    rows = list(session.exec(query.order_by(Customer.created_at.desc(), Customer.id)  # type: ignore[attr-defined]
                             .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all())
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
