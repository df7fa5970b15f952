"""Accounts' HTTP side: account setup, login, logout and the published session keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.accounts import activity, handlers, login as logins, sessions
from postsale.accounts.adapters.tables import Customer, LoginSession, SetupToken
from postsale.accounts.domain import setup as rules
from postsale.accounts.domain import throttle
from postsale.accounts.domain.setup import Refusal
from postsale.runtime.activity import throttle_of
from postsale.runtime.auth import CustomerSession, clear_session_cookie, customer_of, set_session_cookie
from postsale.runtime.csrf import require_csrf, require_csrf_or_our_page
from postsale.runtime.db import SessionDep
from postsale.runtime.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH, MIN_LENGTH as MIN_PASSWORD_LENGTH
from postsale.runtime.web import normalize_email, templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
# The forms tell the browser the same limits the server checks.
templates.env.globals["limits"] = {"name": rules.MAX_NAME_LENGTH, "email": rules.MAX_EMAIL_LENGTH,
                                   "password_min": MIN_PASSWORD_LENGTH, "password_max": MAX_PASSWORD_LENGTH}
router = APIRouter()
# The setup page waits this many one-second refreshes for the purchase to arrive from checkout.
SETUP_WAIT_REFRESHES = 30
MAX_ID_LENGTH = 100  # a purchase id passed along in the waiting page's address


@router.get("/.well-known/jwks.json", tags=["sessions"])
def jwks(request: Request) -> dict:
    return request.app.state.signer.jwks()


def _safe_next(request: Request, next_url: str | None) -> str:
    """Only our own services are allowed as a destination after login (no open redirect)."""
    urls = request.app.state.urls
    ours = (urls.checkout_url, urls.entitlements_url, urls.accounts_url, urls.notifications_url)
    if next_url and any(next_url == base or next_url.startswith(base + "/") for base in ours):
        return next_url
    return urls.library_url


def signed_in(request: Request, session: Session) -> tuple[CustomerSession, LoginSession] | None:
    """The browser's session when its token verifies and accounts still has it open: accounts reads
    its own rows, so a session is refused here the moment it ends."""
    verified = customer_of(request)
    login = sessions.open_session(session, verified)
    return (verified, login) if login is not None else None


def _signed_in(request: Request, session: Session, customer: Customer, destination: str) -> RedirectResponse:
    """Signs the browser in with a new session (ending the one it had: a session id never survives
    a login) and sends it on to `destination`."""
    hours = request.app.state.session_hours
    previous = customer_of(request)
    if previous is not None:
        sessions.end_session(session, previous.session_id, "replaced")
    login = sessions.start_session(session, customer, timedelta(hours=hours))
    activity.record_login(session, throttle_of(request), customer, login.created_at)
    session.commit()
    token = request.app.state.signer.sign(customer_id=customer.id, email=customer.email, session_id=login.id,
                                          lifetime=timedelta(hours=hours))
    response = RedirectResponse(destination, status_code=303)
    set_session_cookie(response, token, max_age=hours * 3600, accounts_url=request.app.state.urls.accounts_url)
    return response


def client_address(request: Request) -> str:
    """The client's address (uvicorn takes it from `X-Forwarded-For` of a trusted proxy only)."""
    return request.client.host if request.client else "unknown"


def too_many(request: Request, exc: "logins.Throttled", template: str = "message.html", **context) -> Response:
    context = {"title": "Too many attempts", "message": str(exc), "alert": True, **context}
    if template != "message.html":
        context["error"] = str(exc)
    return templates.TemplateResponse(request, template, context, status_code=429,
                                      headers={"Retry-After": str(exc.retry_after)})


def _waits(wait: str) -> int:
    """How often the waiting page refreshed already (a counter the page itself puts in its URL)."""
    return int(wait) if wait.isdigit() and len(wait) <= 3 else 0


def _account_page(request: Request, session: Session, token: str, *, setup: SetupToken | None = None,
                  action: str = "/setup", error: str | None = None, form: dict | None = None,
                  check_email_status: int = 200) -> Response:
    """The account page for `token`, or the page that says why it cannot set up the account."""
    setup = setup or handlers.find_setup_token(session, token)
    refusal = handlers.setup_refusal(session, setup)
    if refusal is Refusal.EMAIL_PROOF_REQUIRED:
        # Not an error for this buyer: the purchase went through; the account waits in the mailbox.
        email = session.get(Customer, setup.customer_id).email
        return templates.TemplateResponse(request, "check_email.html", {"email": email},
                                          status_code=check_email_status)
    if refusal is not None:
        return templates.TemplateResponse(request, "setup.html", {"problem": refusal.value, "login_url": "/login"},
                                          status_code=404 if refusal is Refusal.UNKNOWN else 410)
    email = session.get(Customer, setup.customer_id).email
    return templates.TemplateResponse(request, "setup.html", {
        "token": token, "email": email, "action": action, "error": error, **(form or {}),
    }, status_code=422 if error else 200)


def _form_again(request: Request, session: Session, token: str, action: str, error: str, form: dict) -> Response:
    """The form again with what was typed (never the passwords) and the error, without the token
    when it is not ours yet (a password posted from checkout before its purchase arrived)."""
    if handlers.find_setup_token(session, token) is not None:
        return _account_page(request, session, token, action=action, error=error, form=form)
    return templates.TemplateResponse(request, "setup.html", {"token": token if rules.well_formed_token(token) else "",
                                                              "action": action, "error": error, **form},
                                      status_code=422)


def _names(first_name: str, last_name: str) -> dict:
    # Shown again in the form: cut to the limit, so a refused giant value is never echoed back.
    return {"first_name": first_name[:rules.MAX_NAME_LENGTH], "last_name": last_name[:rules.MAX_NAME_LENGTH]}


def _waiting(request: Request, path: str, token: str, waited: int, purchase: str = "", next_url: str = "") -> Response:
    query = {"token": token, "wait": waited + 1}
    if purchase and len(purchase) <= MAX_ID_LENGTH:
        query["purchase"] = purchase
    if _ours(request, next_url):
        query["next"] = next_url
    return templates.TemplateResponse(request, "preparing.html", {"refresh_url": f"{path}?{urlencode(query)}"})


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep, token: str = "", purchase: str = "", wait: str = "0"):
    setup = handlers.find_setup_token(session, token)
    waited = _waits(wait)
    if setup is None and rules.well_formed_token(token) and waited < SETUP_WAIT_REFRESHES:
        # Checkout sends the buyer here at once; the purchase reaches accounts a moment later.
        return _waiting(request, "/setup", token, waited, purchase)
    return _account_page(request, session, token, setup=setup)


@router.post("/setup", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def setup_account(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
                  first_name: Annotated[str, Form()] = "", last_name: Annotated[str, Form()] = "",
                  password: Annotated[str, Form()] = "", password_repeat: Annotated[str, Form()] = ""):
    try:
        customer, setup = handlers.activate_account(session, token=token, first_name=first_name, last_name=last_name,
                                                    password=password, password_repeat=password_repeat)
    except handlers.SetupRefused:
        session.rollback()
        # Only a hand-made request posts a token that must prove the email: refused, with the page.
        return _account_page(request, session, token, check_email_status=403)
    except handlers.AccountError as exc:
        session.rollback()
        return _form_again(request, session, token, "/setup", str(exc), _names(first_name, last_name))
    return _signed_in(request, session, customer, _after_setup(request, setup))


# Posted by checkout's payment page, which carries the browser's secret setup token but no CSRF token:
# taken from one of our pages (its Origin) or with the token.
@router.post("/setup/checkout", response_class=HTMLResponse, dependencies=[Depends(require_csrf_or_our_page)])
def setup_from_checkout(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
                        first_name: Annotated[str, Form()] = "", last_name: Annotated[str, Form()] = "",
                        password: Annotated[str, Form()] = "", password_repeat: Annotated[str, Form()] = "",
                        next: Annotated[str, Form()] = ""):
    """Checkout's payment page asked for name and password ("require a password at checkout"); after
    the payment its page posts them here with the browser's setup token, and where the buyer goes
    on (checkout's own page, for the upsells that follow): only one of our services is taken."""
    try:
        done = handlers.set_password_at_checkout(session, token=token, first_name=first_name, last_name=last_name,
                                                 password=password, password_repeat=password_repeat)
    except handlers.SetupRefused:
        session.rollback()
        return _account_page(request, session, token)
    except handlers.AccountError as exc:
        session.rollback()
        return _form_again(request, session, token, "/setup/checkout", str(exc), _names(first_name, last_name))
    if done is None:
        # The purchase has not reached accounts yet: the password waits for it, the browser too.
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # the same form posted twice at once: the first one is kept
        return _waiting(request, "/setup/checkout", token, 0, next_url=next)
    customer, setup = done
    return _signed_in(request, session, customer, _ours(request, next) or _after_setup(request, setup))


@router.get("/setup/checkout", response_class=HTMLResponse)
def signed_in_from_checkout(request: Request, session: SessionDep, token: str = "", wait: str = "0",
                            next: str = ""):
    """Where the browser waits after posting its password from checkout; signed in once it is set."""
    pending = handlers.pending_activation(session, token)
    if pending is None:  # nothing posted with this token (or it was dropped): the account page decides
        return setup_page(request, session, token=token, wait=wait)
    try:
        done = handlers.sign_in_after_checkout(session, pending)
    except handlers.SetupRefused:
        session.rollback()
        return _account_page(request, session, token)
    if done is None:
        waited = _waits(wait)
        if waited < SETUP_WAIT_REFRESHES:
            return _waiting(request, "/setup/checkout", token, waited, next_url=next)
        return templates.TemplateResponse(request, "message.html", {
            "title": "Your account is almost ready",
            "message": "Your password is saved. Your account is taking longer than usual to prepare: "
                       "try again in a minute, then log in with your email and that password.",
            "link_url": f"/setup/checkout?{urlencode({'token': token})}", "link_text": "Try again",
        }, status_code=202)
    customer, setup = done
    return _signed_in(request, session, customer, _ours(request, next) or _after_setup(request, setup))


def _ours(request: Request, next_url: str) -> str | None:
    """`next_url` when it is a page of one of our services, else None."""
    if not next_url or len(next_url) > rules.MAX_URL_LENGTH:
        return None
    return next_url if _safe_next(request, next_url) == next_url else None


def _after_setup(request: Request, setup: SetupToken) -> str:
    """The purchase's own destination (checked when it arrived), else the library. Never one from the
    request: that would make the account page an open redirect."""
    if setup.after_setup_url:
        return setup.after_setup_url
    # Named in the address, so the library waits for the purchase rather than showing it missing.
    library = request.app.state.urls.library_url
    return f"{library}?{urlencode({'purchase': setup.purchase_id})}" if setup.purchase_id else library


def _bounded(value: str, limit: int) -> str:
    """A value echoed into a page: dropped when longer than any valid one."""
    return value if len(value) <= limit else ""


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, next: str = "", email: str = ""):
    next = _bounded(next, rules.MAX_URL_LENGTH)
    if signed_in(request, session) is not None:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return templates.TemplateResponse(request, "login.html",
                                      {"next": next, "email": _bounded(email, rules.MAX_EMAIL_LENGTH)})


def throttle_subjects(email: str | None, request: Request) -> tuple[str, str]:
    # Keyed by what was typed, whether an account has it or not, so the answers tell nothing.
    return (email or "(not an email)"), client_address(request)


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def log_in(request: Request, session: SessionDep, email: Annotated[str, Form()] = "",
           password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""):
    next = _bounded(next, rules.MAX_URL_LENGTH)
    normalized = normalize_email(email)  # None for anything longer than an email address can be
    account, address = throttle_subjects(normalized, request)
    form = {"next": next, "email": _bounded(email, rules.MAX_EMAIL_LENGTH)}
    try:
        logins.check_throttle(session, [throttle.FAILED_LOGIN_PER_ACCOUNT.key(account),
                                        throttle.FAILED_LOGIN_PER_ADDRESS.key(address)])
    except logins.Throttled as exc:
        return too_many(request, exc, "login.html", **form)
    customer = handlers.authenticate(session, email=normalized, password=password) if normalized else None
    if customer is None:
        logins.count_attempt(session, [(throttle.FAILED_LOGIN_PER_ACCOUNT, account),
                                       (throttle.FAILED_LOGIN_PER_ADDRESS, address)])
        session.commit()
        return templates.TemplateResponse(request, "login.html",
                                          {**form, "error": "That email and password do not match an account."},
                                          status_code=401)
    logins.forget_attempts(session, throttle.FAILED_LOGIN_PER_ACCOUNT, account)
    return _signed_in(request, session, customer, _safe_next(request, next))


# The library's logout button is a form of entitlements' page: taken from one of our pages (its
# Origin) until it carries the CSRF token too.
@router.post("/logout", dependencies=[Depends(require_csrf_or_our_page)])
def log_out(request: Request, session: SessionDep) -> Response:
    customer = customer_of(request)
    if customer is not None:
        sessions.end_session(session, customer.session_id, "logout")
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, accounts_url=request.app.state.urls.accounts_url)
    return response
