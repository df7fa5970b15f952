"""The back office's login (for the pages of every service) and the owner's staff page.

A staff token lives `TOKEN_LIFETIME`; when a page of any service finds it expired it sends the
browser here, and `/admin/login` signs a fresh one at once while the staff session is open, so the
staff member sees nothing of it and a logout is honoured everywhere within that lifetime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from postsale.accounts import login as logins, staff as staffing
from postsale.accounts.adapters.tables import StaffLogin, StaffMember
from postsale.accounts.domain import setup as rules
from postsale.accounts.domain import throttle
from postsale.accounts.entrypoints.api import client_address
from postsale.runtime.csrf import our_origins, require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from postsale.runtime.staff import (ROLES, STAFF_COOKIE, TOKEN_LIFETIME, OwnerDep, backoffice_context,
                                    clear_staff_cookie, set_staff_cookie)
from postsale.runtime.web import normalize_email, templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
pages = APIRouter(prefix="/admin", include_in_schema=False)


def _home(request: Request) -> str:
    """The back office's first page: checkout's dashboard."""
    return f"{request.app.state.urls.checkout_url}/admin/dashboard"


def _safe_next(request: Request, next_url: str) -> str:
    """A page of one of our services (no open redirect); else the back office's first page."""
    if any(ord(c) < 32 for c in next_url):
        return _home(request)
    if next_url.startswith("/admin/") and not next_url.startswith("//") and len(next_url) <= rules.MAX_URL_LENGTH:
        return next_url
    if 0 < len(next_url) <= rules.MAX_URL_LENGTH and any(
            next_url == origin or next_url.startswith(origin + "/") for origin in our_origins(request)):
        return next_url
    return _home(request)


def _signed_in(request: Request, member: StaffMember, login: StaffLogin, destination: str) -> RedirectResponse:
    token = request.app.state.signer.sign_staff(staff_id=member.id, email=member.email, name=member.name,
                                                role=member.role, session_id=login.id, lifetime=TOKEN_LIFETIME)
    response = RedirectResponse(destination, status_code=303)
    set_staff_cookie(response, token, accounts_url=request.app.state.urls.accounts_url)
    return response


def _session_of_cookie(request: Request, session: Session) -> tuple[StaffLogin, StaffMember] | None:
    """The open staff session behind the browser's staff token, expired or not."""
    claims = request.app.state.staff_verifier.claims(request.cookies.get(STAFF_COOKIE), verify_exp=False)
    return staffing.open_session(session, claims["sid"]) if claims else None


def _login_page(request: Request, next_url: str, *, email: str = "", error: str | None = None,
                status_code: int = 200, headers: dict | None = None) -> Response:
    return templates.TemplateResponse(request, "backoffice/login.html", {
        "next": next_url, "email": email[:rules.MAX_EMAIL_LENGTH], "error": error,
        "limits": {"email": rules.MAX_EMAIL_LENGTH, "password": MAX_PASSWORD_LENGTH},
    }, status_code=status_code, headers=headers)


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, next: str = ""):
    """The staff login; a browser whose staff session is still open gets a fresh token and goes on."""
    next = next if len(next) <= rules.MAX_URL_LENGTH else ""
    open_session = _session_of_cookie(request, session)
    if open_session is not None:
        login, member = open_session
        return _signed_in(request, member, login, _safe_next(request, next))
    return _login_page(request, next)


@pages.post("/login", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def log_in(request: Request, session: SessionDep, email: Annotated[str, Form()] = "",
           password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""):
    next = next if len(next) <= rules.MAX_URL_LENGTH else ""
    normalized = normalize_email(email)
    account, address = f"staff:{normalized or '(not an email)'}", client_address(request)
    try:
        logins.check_throttle(session, [throttle.FAILED_LOGIN_PER_ACCOUNT.key(account),
                                        throttle.FAILED_LOGIN_PER_ADDRESS.key(address)])
    except logins.Throttled as exc:
        return _login_page(request, next, email=email, error=str(exc), status_code=429,
                           headers={"Retry-After": str(exc.retry_after)})
    member = staffing.authenticate(session, normalized, password[:MAX_PASSWORD_LENGTH + 1])
    if member is None:
        logins.count_attempt(session, [(throttle.FAILED_LOGIN_PER_ACCOUNT, account),
                                       (throttle.FAILED_LOGIN_PER_ADDRESS, address)])
        session.commit()
        return _login_page(request, next, email=email, error="That email and password do not match a staff "
                                                             "account.", status_code=401)
    logins.forget_attempts(session, throttle.FAILED_LOGIN_PER_ACCOUNT, account)
    previous = _session_of_cookie(request, session)
    if previous is not None:  # a session id never survives a login
        staffing.end_session(session, previous[0].id)
    login = staffing.start_session(session, member)
    session.commit()
    return _signed_in(request, member, login, _safe_next(request, next))


@pages.post("/logout", dependencies=[Depends(require_csrf)])
def log_out(request: Request, session: SessionDep) -> Response:
    open_session = _session_of_cookie(request, session)
    if open_session is not None:
        staffing.end_session(session, open_session[0].id)
        session.commit()
    response = RedirectResponse("/admin/login", status_code=303)
    clear_staff_cookie(response, accounts_url=request.app.state.urls.accounts_url)
    return response


# --- the owner's staff page ---------------------------------------------------------------------


def _staff_page(request: Request, session: Session, owner, *, error: str | None = None, form: dict | None = None,
                added: str | None = None, status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, "backoffice/staff.html", {
        **backoffice_context(request, owner, "Staff"), "members": staffing.members(session), "roles": ROLES,
        "error": error, "form": form or {}, "added": added,
    }, status_code=status_code)


@pages.get("/staff", response_class=HTMLResponse)
def staff_page(request: Request, session: SessionDep, owner: OwnerDep, added: str = ""):
    """Who may use the back office (owner only)."""
    return _staff_page(request, session, owner, added=added[:rules.MAX_EMAIL_LENGTH] or None)


@pages.post("/staff/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def add_staff_member(request: Request, session: SessionDep, owner: OwnerDep, email: Annotated[str, Form()] = "",
                     name: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "support",
                     password: Annotated[str, Form()] = ""):
    form = {"email": email[:rules.MAX_EMAIL_LENGTH], "name": name[:rules.MAX_NAME_LENGTH], "role": role[:20]}
    normalized = normalize_email(email)
    try:
        if normalized is None:
            raise staffing.StaffRefused("Enter the staff member's email address.")
        if len(name) > rules.MAX_NAME_LENGTH:
            raise staffing.StaffRefused(f"The name is at most {rules.MAX_NAME_LENGTH} characters.")
        member = staffing.add_staff(session, email=normalized, name=name, role=role,
                                    password=password[:MAX_PASSWORD_LENGTH + 1])
    except staffing.StaffRefused as exc:
        session.rollback()
        return _staff_page(request, session, owner, error=str(exc), form=form,
                           status_code=409 if isinstance(exc, staffing.StaffExists) else 422)
    session.commit()
    return RedirectResponse(f"/admin/staff?{urlencode({'added': member.email})}", status_code=303)
