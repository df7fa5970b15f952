"""Login sessions: started on each sign-in, ended on logout and when the password or email changes.
Each use case runs inside the caller's transaction and never commits.

Ending a session publishes `SessionEnded`, which every service reads (`postsale.runtime.accounts_feed`)
to refuse the session's token from then on; accounts itself also looks at the session's row.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlmodel import Session, select

from postsale.accounts.adapters.tables import Customer, LoginSession
from postsale.accounts.config import SERVICE
from postsale.contracts import SessionEnded
from postsale.contracts.events import SessionEndReason
from postsale.runtime.auth import CustomerSession
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


def start_session(session: Session, customer: Customer, lifetime: timedelta) -> LoginSession:
    login = LoginSession(id=secrets.token_urlsafe(16), customer_id=customer.id, expires_at=utcnow() + lifetime)
    customer.last_login_at = login.created_at
    session.add_all([login, customer])
    return login


def end_session(session: Session, session_id: str, reason: SessionEndReason = "logout") -> bool:
    """Ends the session if it is still open; True when it was."""
    login = session.get(LoginSession, session_id)
    if login is None or login.ended_at is not None:
        return False
    login.ended_at = utcnow()
    session.add(login)
    publish_later(session, SessionEnded(customer_id=login.customer_id, session_id=login.id, reason=reason,
                                        ended_at=login.ended_at, expires_at=as_utc(login.expires_at)), source=SOURCE)
    return True


def end_all_sessions(session: Session, customer_id: str, reason: SessionEndReason) -> int:
    """Ends every open session of the customer (all browsers, all devices); how many were open."""
    now = utcnow()
    open_sessions = session.exec(select(LoginSession).where(LoginSession.customer_id == customer_id,
                                                            LoginSession.ended_at.is_(None))).all()
    ended = 0
    for login in open_sessions:
        if as_utc(login.expires_at) > now and end_session(session, login.id, reason):
            ended += 1
    return ended


def open_session(session: Session, verified: CustomerSession | None) -> LoginSession | None:
    """The session of a verified token when accounts still has it open (not ended, not expired)."""
    if verified is None:
        return None
    login = session.get(LoginSession, verified.session_id)
    if login is None or login.ended_at is not None or as_utc(login.expires_at) <= utcnow():
        return None
    return login
