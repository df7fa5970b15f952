"""Accounts use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import Session, select

from postsale.accounts.adapters.tables import Customer, PendingActivation, SetupToken
from postsale.accounts.config import SERVICE
from postsale.accounts.domain import setup as rules
from postsale.accounts.domain.passwords import hash_password, verify_password
from postsale.accounts.domain.setup import Refusal
from postsale.contracts import AccountActivated, AccountSetupLinkIssued, CustomerRegistered, PurchaseCompleted
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import insert_once
from postsale.runtime.messaging import publish_later
from postsale.runtime.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from postsale.runtime.settings import PublicUrls, from_environment

SOURCE = f"/postsale/{SERVICE}"


class AccountError(ValueError):
    """Refused, with a message for the customer."""


class SetupRefused(AccountError):
    """This setup token cannot set up its account; `refusal` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


def register_buyer(session: Session, event: PurchaseCompleted, _event_id: str) -> Customer:
    """Started by `PurchaseCompleted`: the customer (publishing `CustomerRegistered` when new); for a
    buyer without an account the setup token whose hash checkout sent, the password chosen at
    checkout if it came first, and the setup link by email (`AccountSetupLinkIssued`).

    An email that already had a customer record before this purchase is never set up from this
    buyer's browser: its token is kept only to tell the browser to use the link emailed to it.
    """
    customer = session.exec(select(Customer).where(Customer.email == event.email)).first()
    created = customer is None
    existed = not created and not _same_buyer(customer, event)
    if created:
        customer = Customer(id=event.customer_id, email=event.email, first_purchase_id=event.purchase_id,
                            first_order_id=event.order_id)
        session.add(customer)
        publish_later(session, CustomerRegistered(customer_id=customer.id, email=customer.email,
                                                  registered_at=customer.created_at), source=SOURCE)
    after_setup_url = rules.trusted_destination(event.after_setup_url)
    token_sha256 = event.account_setup_token_sha256
    setup = SetupToken(token_sha256=token_sha256, customer_id=customer.id, purchase_id=event.purchase_id,
                       expires_at=utcnow() + rules.SETUP_TOKEN_LIFETIME, after_setup_url=after_setup_url,
                       email_proof_required=existed) if token_sha256 else None
    # By its hash: the same token again adds nothing. Kept in the session: activating marks it used.
    if setup is not None and insert_once(session, setup, keep=True):
        pending = session.get(PendingActivation, token_sha256)
        if pending is not None:
            _apply_pending(session, pending, customer, setup)
    # One link per buyer: not again for an upsell or another purchase of the same order. An email
    # that bought before always gets one, whatever the offer says: the browser was told to use it.
    # (A purchase without a browser token, such as a seller's grant of offers, asks for none unless the
    # offer sends the welcome email.)
    told_to_use_email = existed and (token_sha256 is not None or event.send_account_setup_email)
    if customer.activated_at is None and ((created and event.send_account_setup_email) or told_to_use_email):
        issue_setup_link(session, customer, purchase_id=event.purchase_id, after_setup_url=after_setup_url,
                         reason="welcome")
    return customer


def _same_buyer(customer: Customer, event: PurchaseCompleted) -> bool:
    """The purchase is the one that made this customer record, its upsell, or paid in its order."""
    first = customer.first_purchase_id
    return first is not None and (
        event.purchase_id == first or event.parent_purchase_id == first
        or (event.order_id is not None and event.order_id == customer.first_order_id)
    )


def issue_setup_link(session: Session, customer: Customer, *, purchase_id: str | None, after_setup_url: str | None,
                     reason: str) -> SetupToken:
    """A fresh single-use setup token, sent by email only: whoever opens the link owns the email."""
    token = rules.new_token()
    setup = SetupToken(token_sha256=rules.token_sha256(token), customer_id=customer.id, purchase_id=purchase_id,
                       expires_at=utcnow() + rules.SETUP_TOKEN_LIFETIME, after_setup_url=after_setup_url)
    # A fresh random token, so always new; kept, since it is returned as a row the caller may change.
    insert_once(session, setup, keep=True)
    # The purchase rides in the link, as in checkout's redirect; notifications keys the email by it.
    query = urlencode({"purchase": purchase_id, "token": token} if purchase_id else {"token": token})
    publish_later(session, AccountSetupLinkIssued(
        customer_id=customer.id, email=customer.email, expires_at=setup.expires_at,
        url=f"{from_environment(PublicUrls).accounts_url}/setup?{query}", reason=reason, issued_at=setup.created_at,
    ), source=SOURCE)
    return setup


def find_setup_token(session: Session, token: str) -> SetupToken | None:
    if not rules.well_formed_token(token):
        return None
    return session.get(SetupToken, rules.token_sha256(token))


def setup_refusal(session: Session, setup: SetupToken | None) -> Refusal | None:
    """Why `setup` cannot set up its account now; None when it can."""
    customer = session.get(Customer, setup.customer_id) if setup else None
    return rules.refusal(found=setup is not None, activated_at=customer.activated_at if customer else None,
                         email_proof_required=setup.email_proof_required if setup else False,
                         expires_at=setup.expires_at if setup else None, now=utcnow())


def _usable_setup_token(session: Session, token: str) -> SetupToken:
    setup = find_setup_token(session, token)
    refusal = setup_refusal(session, setup)
    if refusal:
        raise SetupRefused(refusal)
    return setup


def _details(first_name: str, last_name: str, password: str, password_repeat: str) -> None:
    problem = rules.details_problem(first_name, last_name, password, password_repeat)
    if problem:
        raise AccountError(problem)


def activate_account(session: Session, *, token: str, first_name: str, last_name: str, password: str,
                     password_repeat: str) -> tuple[Customer, SetupToken]:
    """The account page: sets the name and password of a new account. Uses up the token."""
    setup = _usable_setup_token(session, token)
    _details(first_name, last_name, password, password_repeat)
    customer = session.get(Customer, setup.customer_id)
    _activate(session, customer, setup, first_name=first_name, last_name=last_name,
              password_hash=hash_password(password))
    return customer, setup


def set_password_at_checkout(session: Session, *, token: str, first_name: str, last_name: str, password: str,
                             password_repeat: str) -> tuple[Customer, SetupToken] | None:
    """Name and password chosen on checkout's payment page, posted with the browser's setup token.

    Activates the account at once when the purchase is here; otherwise keeps them (the password
    hashed) for `register_buyer` and returns None: the browser waits, then `sign_in_after_checkout`.
    """
    _details(first_name, last_name, password, password_repeat)
    if not rules.well_formed_token(token):
        raise SetupRefused(Refusal.UNKNOWN)
    token_sha256 = rules.token_sha256(token)
    if session.get(SetupToken, token_sha256) is None:
        if session.get(PendingActivation, token_sha256) is None:  # a repeated post keeps the first
            session.add(PendingActivation(token_sha256=token_sha256, first_name=first_name.strip(),
                                          last_name=last_name.strip(), password_hash=hash_password(password),
                                          expires_at=utcnow() + rules.PENDING_ACTIVATION_LIFETIME))
        return None
    return activate_account(session, token=token, first_name=first_name, last_name=last_name, password=password,
                            password_repeat=password_repeat)


def pending_activation(session: Session, token: str) -> PendingActivation | None:
    return session.get(PendingActivation, rules.token_sha256(token)) if rules.well_formed_token(token) else None


def sign_in_after_checkout(session: Session, pending: PendingActivation) -> tuple[Customer, SetupToken] | None:
    """The browser that chose its password at checkout (and so holds the token of `pending`), once
    the account is active: signed in, once. None while the purchase has not arrived yet."""
    setup = session.get(SetupToken, pending.token_sha256)
    if setup is None:
        return None
    customer = session.get(Customer, setup.customer_id)
    if pending.applied_at is None:
        # The purchase arrived while the pending activation was being stored, so register_buyer
        # did not see it: apply it now.
        _apply_pending(session, pending, customer, setup)
    if pending.applied_at is None:
        raise SetupRefused(setup_refusal(session, setup) or Refusal.EXPIRED)
    claimed = session.exec(
        update(PendingActivation)
        .where(PendingActivation.token_sha256 == pending.token_sha256, PendingActivation.signed_in_at.is_(None))
        .values(signed_in_at=utcnow())
    ).rowcount
    if claimed != 1:  # signed in once already: the address in this browser's history is spent
        raise SetupRefused(Refusal.ALREADY_SET_UP)
    return customer, setup


def _apply_pending(session: Session, pending: PendingActivation, customer: Customer, setup: SetupToken) -> None:
    """Sets the password chosen at checkout, if this browser token may set the account up."""
    if setup.email_proof_required or customer.activated_at is not None or as_utc(pending.expires_at) < utcnow():
        session.delete(pending)  # never kept: it cannot be used
        return
    _activate(session, customer, setup, first_name=pending.first_name, last_name=pending.last_name,
              password_hash=pending.password_hash)
    pending.applied_at = customer.activated_at
    pending.password_hash = ""  # now in the customer's record; no second copy
    session.add(pending)


def _activate(session: Session, customer: Customer, setup: SetupToken, *, first_name: str, last_name: str,
              password_hash: str) -> None:
    """Activates the account once, however many tokens and requests race for it."""
    session.flush()
    now = utcnow()
    claimed = session.exec(
        update(Customer).where(Customer.id == customer.id, Customer.activated_at.is_(None)).values(activated_at=now)
    ).rowcount
    if claimed != 1:
        raise SetupRefused(Refusal.ALREADY_SET_UP)
    customer.first_name, customer.last_name = first_name.strip(), last_name.strip()
    customer.password_hash = password_hash
    customer.activated_at = now
    setup.used_at = now
    session.add_all([customer, setup])
    publish_later(session, AccountActivated(customer_id=customer.id, email=customer.email,
                                            first_name=customer.first_name, last_name=customer.last_name,
                                            activated_at=now), source=SOURCE)


def authenticate(session: Session, *, email: str, password: str) -> Customer | None:
    if len(password) > MAX_PASSWORD_LENGTH:
        return None  # no such password can be set; not worth hashing
    customer = session.exec(select(Customer).where(Customer.email == email)).first()
    password_hash = customer.password_hash if customer else None
    if not verify_password(password_hash, password):
        return None
    return customer
