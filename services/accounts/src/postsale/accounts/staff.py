"""The seller's staff and their back-office sessions (`postsale.runtime.staff` says how every service
verifies them). Each use case runs inside the caller's transaction and never commits."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.accounts.adapters.tables import StaffLogin, StaffMember
from postsale.accounts.domain.passwords import hash_password, verify_password
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.passwords import password_problem
from postsale.runtime.staff import ROLES

SESSION_LIFETIME = timedelta(hours=12)  # a staff session ends by itself after a working day


class StaffRefused(ValueError):
    """Refused, with a message for the person at the form."""


class StaffExists(StaffRefused):
    """The email belongs to a staff member already."""


def staff_by_email(session: Session, email: str) -> StaffMember | None:
    return session.exec(select(StaffMember).where(StaffMember.email == email,
                                                  StaffMember.removed_at.is_(None))).first()  # type: ignore[union-attr]


def add_staff(session: Session, *, email: str, name: str, role: str, password: str) -> StaffMember:
    """A new staff member who logs in with `email` and `password`."""
    if "\x00" in name + password:
        raise StaffRefused("Names and passwords cannot hold NUL characters.")
    if role not in ROLES:
        raise StaffRefused(f"The role is one of {', '.join(ROLES)}.")
    problem = password_problem(password, password)
    if problem:
        raise StaffRefused(problem)
    member = StaffMember(id=f"stf_{uuid.uuid4().hex[:16]}", email=email, name=name.strip(), role=role,
                         password_hash=hash_password(password))
    try:
        with session.begin_nested():  # the email's unique key decides, also between two adds at once
            session.add(member)
    except IntegrityError as exc:
        raise StaffExists(f"{email} is a staff member already.") from exc
    return member


def authenticate(session: Session, email: str | None, password: str) -> StaffMember | None:
    """The staff member with that email and password; the same time is spent on an unknown email."""
    member = staff_by_email(session, email) if email else None
    return member if verify_password(member.password_hash if member else None, password) else None


def start_session(session: Session, member: StaffMember, now: datetime | None = None) -> StaffLogin:
    now = now or utcnow()
    login = StaffLogin(id=secrets.token_urlsafe(16), staff_id=member.id, created_at=now,
                       expires_at=now + SESSION_LIFETIME)
    session.add(login)
    return login


def open_session(session: Session, session_id: str, now: datetime | None = None) -> tuple[StaffLogin, StaffMember] | None:
    """The staff session and its member while both last: what renewing a token asks."""
    now = now or utcnow()
    login = session.get(StaffLogin, session_id) if len(session_id) <= 64 else None
    if login is None or login.ended_at is not None or as_utc(login.expires_at) <= now:
        return None
    member = session.get(StaffMember, login.staff_id)
    if member is None or member.removed_at is not None:
        return None
    return login, member


def end_session(session: Session, session_id: str) -> None:
    login = session.get(StaffLogin, session_id) if len(session_id) <= 64 else None
    if login is not None and login.ended_at is None:
        login.ended_at = utcnow()
        session.add(login)


def members(session: Session) -> list[StaffMember]:
    return list(session.exec(select(StaffMember).where(StaffMember.removed_at.is_(None))  # type: ignore[union-attr]
                             .order_by(StaffMember.created_at)).all())
