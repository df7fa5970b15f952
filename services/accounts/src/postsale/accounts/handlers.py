"""Accounts use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import Session, select

from postsale.accounts.adapters.tables import Customer, LoginSession, SetupToken
from postsale.accounts.config import SERVICE
from postsale.accounts.domain.passwords import hash_password, password_problem, verify_password
from postsale.contracts import AccountActivated, CustomerRegistered, PurchaseCompleted
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"
SETUP_TOKEN_LIFETIME = timedelta(days=14)


class AccountError(ValueError):
    """Refused, with a message for the customer."""


def register_buyer(session: Session, event: PurchaseCompleted, _event_id: str) -> Customer:
    """Started by `PurchaseCompleted`: the customer (publishing `CustomerRegistered` when new) and,
    for a buyer without an account, the single-use setup token whose hash checkout sent."""
    customer = session.exec(select(Customer).where(Customer.email == event.email)).first()
    if customer is None:
        customer = Customer(id=event.customer_id, email=event.email)
        session.add(customer)
        publish_later(session, CustomerRegistered(customer_id=customer.id, email=customer.email,
                                                  registered_at=customer.created_at), source=SOURCE)
    if customer.activated_at is None and event.account_setup_token_sha256:
        if session.get(SetupToken, event.account_setup_token_sha256) is None:
            session.add(SetupToken(token_sha256=event.account_setup_token_sha256, customer_id=customer.id,
                                   purchase_id=event.purchase_id,
                                   expires_at=utcnow() + SETUP_TOKEN_LIFETIME))
    return customer


def find_setup_token(session: Session, token: str) -> SetupToken | None:
    return session.get(SetupToken, hashlib.sha256(token.encode()).hexdigest())


def setup_token_problem(setup: SetupToken | None) -> str | None:
    if setup is None:
        return "This account setup link is not valid."
    if setup.used_at is not None:
        return "This account is already set up. Log in with your email and password."
    if as_utc(setup.expires_at) < utcnow():
        return "This account setup link has expired. Log in, or ask for a new link."
    return None


def activate_account(session: Session, *, token: str, first_name: str, last_name: str, password: str,
                     password_repeat: str) -> Customer:
    """Sets the name and password of a new account and publishes `AccountActivated`. Uses up the token."""
    setup = find_setup_token(session, token)
    problem = setup_token_problem(setup)
    if problem:
        raise AccountError(problem)
    if not first_name.strip() or not last_name.strip():
        raise AccountError("Enter your first and last name.")
    problem = password_problem(password, password_repeat)
    if problem:
        raise AccountError(problem)
    customer = session.get(Customer, setup.customer_id)
    customer.first_name = first_name.strip()
    customer.last_name = last_name.strip()
    customer.password_hash = hash_password(password)
    customer.activated_at = utcnow()
    setup.used_at = customer.activated_at
    session.add_all([customer, setup])
    publish_later(session, AccountActivated(customer_id=customer.id, email=customer.email,
                                            first_name=customer.first_name, last_name=customer.last_name,
                                            activated_at=customer.activated_at), source=SOURCE)
    return customer


def authenticate(session: Session, *, email: str, password: str) -> Customer | None:
    customer = session.exec(select(Customer).where(Customer.email == email)).first()
    password_hash = customer.password_hash if customer else None
    if not verify_password(password_hash, password):
        return None
    return customer


def start_session(session: Session, customer: Customer, lifetime: timedelta) -> LoginSession:
    login = LoginSession(id=secrets.token_urlsafe(16), customer_id=customer.id, expires_at=utcnow() + lifetime)
    customer.last_login_at = login.created_at
    session.add_all([login, customer])
    return login


def end_session(session: Session, session_id: str) -> None:
    login = session.get(LoginSession, session_id)
    if login is not None and login.ended_at is None:
        login.ended_at = utcnow()
        session.add(login)
