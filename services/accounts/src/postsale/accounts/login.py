"""Signing in without a password, resetting a password, changing the login email, and throttling
the attempts. Each use case runs inside the caller's transaction and never commits.

A login link and its code (or a reset link and its code) are one `LoginChallenge`: only hashes are
stored, the link and the code travel once, on the restricted `accounts.account-links.v1`, to the
email notifications sends. Asking for an email never tells whether an account has that address.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import Session, select

from postsale.accounts.adapters.tables import Customer, EmailChange, LoginChallenge, Throttle
from postsale.accounts.config import SERVICE
from postsale.accounts.domain import login as rules
from postsale.accounts.domain import throttle
from postsale.accounts.domain.login import LinkRefusal, Purpose
from postsale.accounts.domain.passwords import hash_password, verify_password
from postsale.accounts.domain.setup import new_token, token_sha256, well_formed_token
from postsale.accounts.handlers import AccountError
from postsale.accounts.sessions import end_all_sessions
from postsale.contracts import (AccountActivated, CustomerEmailChanged, EmailChangeRequested, LoginLinkIssued,
                                PasswordResetRequested)
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from postsale.runtime.passwords import password_problem
from postsale.runtime.settings import PublicUrls, from_environment

SOURCE = f"/postsale/{SERVICE}"


class LinkRefused(AccountError):
    def __init__(self, refusal: LinkRefusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class CodeRefused(AccountError):
    def __init__(self) -> None:
        super().__init__(rules.CODE_REFUSED)


class Throttled(AccountError):
    """Too many attempts: the next one is heard after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        minutes = (retry_after + 59) // 60
        wait = f"{retry_after} seconds" if retry_after < 120 else f"{minutes} minutes"
        super().__init__(f"Too many attempts. For your security, wait {wait} and try again.")
        self.retry_after = retry_after


def customer_by_email(session: Session, email: str | None) -> Customer | None:
    if not email:
        return None
    return session.exec(select(Customer).where(Customer.email == email)).first()


# --- throttling ------------------------------------------------------------------------------


def check_throttle(session: Session, keys: list[str], now: datetime | None = None) -> None:
    """Raises `Throttled` when any of `keys` must still wait."""
    now = now or utcnow()
    waits = [throttle.wait(_state(session.get(Throttle, key)), now) for key in keys]
    longest = max((w for w in waits if w is not None), default=None)
    if longest is not None:
        raise Throttled(throttle.seconds(longest))


def count_attempt(session: Session, policies_and_subjects: list[tuple[throttle.Policy, str]],
                  now: datetime | None = None) -> None:
    """One more attempt for each subject, under its policy (the delay grows from the free ones on)."""
    now = now or utcnow()
    for policy, subject in policies_and_subjects:
        key = policy.key(subject)
        row = session.exec(select(Throttle).where(Throttle.key == key).with_for_update()).first()
        state = throttle.after_attempt(policy, _state(row), now)
        if row is None:
            row = Throttle(key=key, window_started_at=state.window_started_at)
        row.hits, row.window_started_at, row.blocked_until = state.hits, state.window_started_at, state.blocked_until
        session.add(row)
        session.flush()


def forget_attempts(session: Session, policy: throttle.Policy, subject: str) -> None:
    """After a successful login: the account's failures no longer count (the address's still do)."""
    row = session.get(Throttle, policy.key(subject))
    if row is not None:
        session.delete(row)


def _state(row: Throttle | None) -> throttle.State | None:
    if row is None:
        return None
    return throttle.State(hits=row.hits, window_started_at=row.window_started_at, blocked_until=row.blocked_until)


# --- login links and codes, password resets --------------------------------------------------


def _challenge(session: Session, customer: Customer, purpose: Purpose, next_url: str | None) -> tuple[str, str, LoginChallenge]:
    """A new challenge for the customer, ending any earlier one of the same purpose; its token and code."""
    now = utcnow()
    session.exec(update(LoginChallenge).where(LoginChallenge.customer_id == customer.id,
                                              LoginChallenge.purpose == purpose.value,
                                              LoginChallenge.used_at.is_(None)).values(used_at=now))
    token, code = new_token(), rules.new_code()
    lifetime = rules.LOGIN_LINK_LIFETIME if purpose is Purpose.LOGIN else rules.PASSWORD_RESET_LIFETIME
    challenge_id = secrets.token_urlsafe(12)
    challenge = LoginChallenge(id=challenge_id, customer_id=customer.id, purpose=purpose.value,
                               token_sha256=token_sha256(token), code_sha256=rules.code_sha256(challenge_id, code),
                               created_at=now, expires_at=now + lifetime, next_url=next_url)
    session.add(challenge)
    return token, code, challenge


def issue_login_link(session: Session, customer: Customer, *, next_url: str | None = None,
                     reason: str = "customer") -> LoginChallenge:
    """A login link and code for the customer, by email (`LoginLinkIssued`)."""
    token, code, challenge = _challenge(session, customer, Purpose.LOGIN, next_url)
    query = {"token": token, **({"next": next_url} if next_url else {})}
    publish_later(session, LoginLinkIssued(
        customer_id=customer.id, email=customer.email, expires_at=challenge.expires_at,
        url=f"{from_environment(PublicUrls).accounts_url}/login/link?{urlencode(query)}", code=code,
        issued_at=challenge.created_at,
        reason=reason,
    ), source=SOURCE)
    return challenge


def request_login_link(session: Session, email: str | None, *, next_url: str | None = None) -> None:
    """Started by the login page: a link and a code to the email if an account has it; nothing
    otherwise, and the same answer either way."""
    customer = customer_by_email(session, email)
    if customer is not None:
        issue_login_link(session, customer, next_url=next_url)


def request_password_reset(session: Session, email: str | None) -> None:
    """A reset link and code to the email if an account has it (`PasswordResetRequested`)."""
    customer = customer_by_email(session, email)
    if customer is None:
        return
    token, code, challenge = _challenge(session, customer, Purpose.RESET, None)
    publish_later(session, PasswordResetRequested(
        customer_id=customer.id, email=customer.email, expires_at=challenge.expires_at,
        url=f"{from_environment(PublicUrls).accounts_url}/password/reset/confirm?{urlencode({'token': token})}",
        code=code,
        requested_at=challenge.created_at,
    ), source=SOURCE)


def find_challenge(session: Session, token: str, purpose: Purpose) -> LoginChallenge | None:
    if not well_formed_token(token):
        return None
    challenge = session.exec(select(LoginChallenge).where(LoginChallenge.token_sha256 == token_sha256(token))).first()
    return challenge if challenge is not None and challenge.purpose == purpose.value else None


def challenge_refusal(challenge: LoginChallenge | None) -> LinkRefusal | None:
    return rules.link_refusal(found=challenge is not None, used_at=challenge.used_at if challenge else None,
                              expires_at=challenge.expires_at if challenge else None,
                              failed_attempts=challenge.failed_attempts if challenge else 0, now=utcnow())


def _use(session: Session, challenge: LoginChallenge) -> Customer:
    """Uses the challenge up, once however many requests race for it."""
    claimed = session.exec(update(LoginChallenge).where(LoginChallenge.id == challenge.id,
                                                        LoginChallenge.used_at.is_(None))
                           .values(used_at=utcnow())).rowcount
    if claimed != 1:
        raise LinkRefused(LinkRefusal.USED)
    return session.get(Customer, challenge.customer_id)


def use_link(session: Session, token: str, purpose: Purpose) -> tuple[Customer, LoginChallenge]:
    """The button on a link's page (never its GET): the customer whose link it is. Uses it up."""
    challenge = find_challenge(session, token, purpose)
    refusal = challenge_refusal(challenge)
    if refusal is not None:
        raise LinkRefused(refusal)
    return _use(session, challenge), challenge


def use_code(session: Session, email: str | None, code: str, purpose: Purpose) -> tuple[Customer, LoginChallenge]:
    """A code typed with its email: the customer. A wrong code counts against the challenge (after
    `MAX_CODE_ATTEMPTS` it is used up); the caller commits that even when this raises."""
    customer = customer_by_email(session, email)
    typed = rules.well_formed_code(code)
    challenge = None
    if customer is not None:
        challenge = session.exec(
            select(LoginChallenge).where(LoginChallenge.customer_id == customer.id,
                                         LoginChallenge.purpose == purpose.value, LoginChallenge.used_at.is_(None))
            .order_by(LoginChallenge.created_at.desc())
        ).first()
    if challenge is None or challenge_refusal(challenge) is not None:
        raise CodeRefused()
    if typed is None or not rules.code_matches(challenge.code_sha256, challenge.id, typed):
        session.exec(update(LoginChallenge).where(LoginChallenge.id == challenge.id)
                     .values(failed_attempts=LoginChallenge.failed_attempts + 1))
        raise CodeRefused()
    return _use(session, challenge), challenge


def set_new_password(session: Session, customer: Customer, password: str) -> None:
    """Sets the password and ends every session of the customer (the caller signs this browser in
    again). A customer who never set up the account has one from now on."""
    customer.password_hash = hash_password(password)
    session.add(customer)
    end_all_sessions(session, customer.id, "password_changed")
    if customer.activated_at is None:
        now = utcnow()
        claimed = session.exec(update(Customer).where(Customer.id == customer.id, Customer.activated_at.is_(None))
                               .values(activated_at=now)).rowcount
        if claimed == 1:
            customer.activated_at = now
            publish_later(session, AccountActivated(customer_id=customer.id, email=customer.email,
                                                    first_name=customer.first_name, last_name=customer.last_name,
                                                    activated_at=now), source=SOURCE)


def reset_password(session: Session, *, token: str, email: str | None, code: str, password: str,
                   password_repeat: str) -> Customer:
    """The new-password form, reached by the reset link (`token`) or with the emailed code."""
    problem = password_problem(password, password_repeat)
    if problem:
        raise AccountError(problem)
    if token:
        customer, _ = use_link(session, token, Purpose.RESET)
    else:
        customer, _ = use_code(session, email, code, Purpose.RESET)
    set_new_password(session, customer, password)
    return customer


def change_password(session: Session, customer: Customer, *, current_password: str, password: str,
                    password_repeat: str) -> None:
    """A signed-in customer's new password; the current one is asked for when there is one."""
    if customer.password_hash and (len(current_password) > MAX_PASSWORD_LENGTH
                                   or not verify_password(customer.password_hash, current_password)):
        raise AccountError("Your current password is not right.")
    problem = password_problem(password, password_repeat)
    if problem:
        raise AccountError(problem)
    set_new_password(session, customer, password)


# --- change of email -------------------------------------------------------------------------


def request_email_change(session: Session, customer: Customer, new_email: str | None, *,
                         current_password: str) -> None:
    """A signed-in customer asks to log in with another address: a link to it confirms the change
    (`EmailChangeRequested`). An address another account has gets no link (and no answer that says so)."""
    if new_email is None:
        raise AccountError("Enter the new email address.")
    if new_email == customer.email:
        raise AccountError("That is already your email address.")
    if customer.password_hash and (len(current_password) > MAX_PASSWORD_LENGTH
                                   or not verify_password(customer.password_hash, current_password)):
        raise AccountError("Your current password is not right.")
    if customer_by_email(session, new_email) is not None:
        return
    token = new_token()
    now = utcnow()
    change = EmailChange(token_sha256=token_sha256(token), customer_id=customer.id, new_email=new_email,
                         created_at=now, expires_at=now + rules.EMAIL_CHANGE_LIFETIME)
    session.add(change)
    publish_later(session, EmailChangeRequested(
        customer_id=customer.id, email=customer.email, new_email=new_email, expires_at=change.expires_at,
        url=f"{from_environment(PublicUrls).accounts_url}/account/email/confirm?{urlencode({'token': token})}",
        requested_at=now,
    ), source=SOURCE)


def find_email_change(session: Session, token: str) -> EmailChange | None:
    return session.get(EmailChange, token_sha256(token)) if well_formed_token(token) else None


def email_change_refusal(change: EmailChange | None) -> LinkRefusal | None:
    return rules.link_refusal(found=change is not None, used_at=change.used_at if change else None,
                              expires_at=change.expires_at if change else None, failed_attempts=0, now=utcnow())


def confirm_email_change(session: Session, token: str) -> Customer:
    """The button on the confirmation page: the account logs in with the new address from now on;
    every session ends (`CustomerEmailChanged`, `SessionEnded`)."""
    change = find_email_change(session, token)
    refusal = email_change_refusal(change)
    if refusal is not None:
        raise LinkRefused(refusal)
    claimed = session.exec(update(EmailChange).where(EmailChange.token_sha256 == change.token_sha256,
                                                     EmailChange.used_at.is_(None)).values(used_at=utcnow())).rowcount
    if claimed != 1:
        raise LinkRefused(LinkRefusal.USED)
    if customer_by_email(session, change.new_email) is not None:
        raise AccountError("Another account uses that email address now, so this one keeps its address.")
    customer = session.get(Customer, change.customer_id)
    old_email = customer.email
    customer.email = change.new_email
    session.add(customer)
    end_all_sessions(session, customer.id, "email_changed")
    publish_later(session, CustomerEmailChanged(customer_id=customer.id, old_email=old_email,
                                                new_email=customer.email, changed_at=utcnow()), source=SOURCE)
    return customer


def expired(moment: datetime) -> bool:
    return as_utc(moment) <= utcnow()
