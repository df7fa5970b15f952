"""Accounts' pages for signing in without a password, resetting a password and changing the login
email. A GET never signs in or changes anything (mail scanners open links); each page's button does."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from postsale.accounts import login as logins
from postsale.accounts.adapters.tables import Customer
from postsale.accounts.domain import setup as rules
from postsale.accounts.domain import throttle
from postsale.accounts.domain.login import LinkRefusal, Purpose
from postsale.accounts.entrypoints.api import (_bounded, _ours, _safe_next, _signed_in, signed_in,
                                               templates, throttle_subjects, too_many)
from postsale.accounts.handlers import AccountError
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.web import normalize_email

router = APIRouter()
Text = Annotated[str, Form()]
CSRF = [Depends(require_csrf)]


def _next(request: Request, next_url: str) -> str:
    """`next_url` when it is one of our pages, else empty."""
    return _ours(request, _bounded(next_url, rules.MAX_URL_LENGTH)) or ""


def _email_form_throttle(session, request: Request, email: str | None) -> None:
    account, address = throttle_subjects(email, request)
    logins.check_throttle(session, [throttle.EMAILS_PER_ACCOUNT.key(account), throttle.EMAILS_PER_ADDRESS.key(address)])
    logins.count_attempt(session, [(throttle.EMAILS_PER_ACCOUNT, account), (throttle.EMAILS_PER_ADDRESS, address)])


def _code_throttle(session, request: Request, email: str | None) -> list[tuple[throttle.Policy, str]]:
    account, address = throttle_subjects(email, request)
    logins.check_throttle(session, [throttle.FAILED_LOGIN_PER_ACCOUNT.key(account),
                                    throttle.FAILED_LOGIN_PER_ADDRESS.key(address)])
    return [(throttle.FAILED_LOGIN_PER_ACCOUNT, account), (throttle.FAILED_LOGIN_PER_ADDRESS, address)]


def _link_refused(request: Request, refusal: LinkRefusal, ask_again_url: str, link_text: str) -> Response:
    return templates.TemplateResponse(request, "message.html", {
        "title": "This link cannot be used", "message": refusal.value, "alert": True,
        "link_url": ask_again_url, "link_text": link_text,
    }, status_code=404 if refusal is LinkRefusal.UNKNOWN else 410)


# --- login by email: a link and a code ------------------------------------------------------


@router.get("/login/link", response_class=HTMLResponse)
def login_link_page(request: Request, session: SessionDep, token: str = "", next: str = "", email: str = ""):
    """Without a token: the form that asks for a link. With one (the emailed link): a page whose
    button signs in; opening it uses nothing up."""
    next = _next(request, next)
    if not token:
        return templates.TemplateResponse(request, "login_link.html",
                                          {"next": next, "email": _bounded(email, rules.MAX_EMAIL_LENGTH)})
    challenge = logins.find_challenge(session, token, Purpose.LOGIN)
    refusal = logins.challenge_refusal(challenge)
    if refusal is not None:
        return _link_refused(request, refusal, "/login/link", "Email me a new login link")
    email = session.get(Customer, challenge.customer_id).email
    return templates.TemplateResponse(request, "login_link_confirm.html", {"token": token, "email": email,
                                                                          "next": next})


@router.post("/login/link", response_class=HTMLResponse, dependencies=CSRF)
def ask_for_login_link(request: Request, session: SessionDep, email: Text = "", next: Text = ""):
    next = _next(request, next)
    normalized = normalize_email(email)
    form = {"next": next, "email": _bounded(email, rules.MAX_EMAIL_LENGTH)}
    if normalized is None:
        return templates.TemplateResponse(request, "login_link.html",
                                          {**form, "error": "Enter your email address."}, status_code=422)
    try:
        _email_form_throttle(session, request, normalized)
    except logins.Throttled as exc:
        return too_many(request, exc, "login_link.html", **form)
    logins.request_login_link(session, normalized, next_url=next or None)
    session.commit()
    return templates.TemplateResponse(request, "login_code.html", {"email": normalized, "next": next, "sent": True})


@router.post("/login/link/confirm", response_class=HTMLResponse, dependencies=CSRF)
def log_in_with_link(request: Request, session: SessionDep, token: Text = "", next: Text = ""):
    try:
        customer, challenge = logins.use_link(session, token, Purpose.LOGIN)
    except logins.LinkRefused as exc:
        session.rollback()
        return _link_refused(request, exc.refusal, "/login/link", "Email me a new login link")
    destination = _next(request, next) or (challenge.next_url and _ours(request, challenge.next_url))
    return _signed_in(request, session, customer, destination or _safe_next(request, None))


@router.get("/login/code", response_class=HTMLResponse)
def login_code_page(request: Request, email: str = "", next: str = ""):
    return templates.TemplateResponse(request, "login_code.html", {
        "email": _bounded(email, rules.MAX_EMAIL_LENGTH), "next": _next(request, next)})


@router.post("/login/code", response_class=HTMLResponse, dependencies=CSRF)
def log_in_with_code(request: Request, session: SessionDep, email: Text = "", code: Text = "", next: Text = ""):
    next = _next(request, next)
    normalized = normalize_email(email)
    form = {"email": _bounded(email, rules.MAX_EMAIL_LENGTH), "next": next}
    try:
        attempt = _code_throttle(session, request, normalized)
        customer, challenge = logins.use_code(session, normalized, code, Purpose.LOGIN)
    except logins.Throttled as exc:
        return too_many(request, exc, "login_code.html", **form)
    except logins.CodeRefused as exc:
        logins.count_attempt(session, attempt)
        session.commit()  # the wrong try counts against the code and the throttle
        return templates.TemplateResponse(request, "login_code.html", {**form, "error": str(exc)}, status_code=401)
    logins.forget_attempts(session, throttle.FAILED_LOGIN_PER_ACCOUNT, normalized)
    destination = next or (challenge.next_url and _ours(request, challenge.next_url))
    return _signed_in(request, session, customer, destination or _safe_next(request, None))


# --- password reset -------------------------------------------------------------------------


@router.get("/password/reset", response_class=HTMLResponse)
def password_reset_page(request: Request, email: str = ""):
    return templates.TemplateResponse(request, "password_reset.html",
                                      {"email": _bounded(email, rules.MAX_EMAIL_LENGTH)})


@router.post("/password/reset", response_class=HTMLResponse, dependencies=CSRF)
def ask_for_password_reset(request: Request, session: SessionDep, email: Text = ""):
    normalized = normalize_email(email)
    form = {"email": _bounded(email, rules.MAX_EMAIL_LENGTH)}
    if normalized is None:
        return templates.TemplateResponse(request, "password_reset.html",
                                          {**form, "error": "Enter your email address."}, status_code=422)
    try:
        _email_form_throttle(session, request, normalized)
    except logins.Throttled as exc:
        return too_many(request, exc, "password_reset.html", **form)
    logins.request_password_reset(session, normalized)
    session.commit()
    return templates.TemplateResponse(request, "password_new.html", {"email": normalized, "sent": True})


@router.get("/password/reset/confirm", response_class=HTMLResponse)
def new_password_page(request: Request, session: SessionDep, token: str = ""):
    challenge = logins.find_challenge(session, token, Purpose.RESET)
    refusal = logins.challenge_refusal(challenge)
    if refusal is not None:
        return _link_refused(request, refusal, "/password/reset", "Ask for a new reset link")
    email = session.get(Customer, challenge.customer_id).email
    return templates.TemplateResponse(request, "password_new.html", {"token": token, "email": email})


@router.post("/password/reset/confirm", response_class=HTMLResponse, dependencies=CSRF)
def reset_password(request: Request, session: SessionDep, token: Text = "", email: Text = "", code: Text = "",
                   password: Text = "", password_repeat: Text = ""):
    normalized = normalize_email(email) if not token else None
    form = {"token": token if rules.well_formed_token(token) else "", "email": _bounded(email, rules.MAX_EMAIL_LENGTH)}
    try:
        attempt = _code_throttle(session, request, normalized) if not token else []
        customer = logins.reset_password(session, token=token, email=normalized, code=code, password=password,
                                         password_repeat=password_repeat)
    except logins.Throttled as exc:
        return too_many(request, exc, "password_new.html", **form)
    except logins.LinkRefused as exc:
        session.rollback()
        return _link_refused(request, exc.refusal, "/password/reset", "Ask for a new reset link")
    except logins.CodeRefused as exc:
        logins.count_attempt(session, attempt)
        session.commit()
        return templates.TemplateResponse(request, "password_new.html", {**form, "error": str(exc)}, status_code=401)
    except AccountError as exc:
        session.rollback()
        return templates.TemplateResponse(request, "password_new.html", {**form, "error": str(exc)}, status_code=422)
    if normalized:
        logins.forget_attempts(session, throttle.FAILED_LOGIN_PER_ACCOUNT, normalized)
    return _signed_in(request, session, customer, _safe_next(request, None))


# --- the signed-in customer's account: email and password -------------------------------------


def _account_page(request: Request, customer: Customer, *, status_code: int = 200, **context) -> Response:
    return templates.TemplateResponse(request, "account.html", {
        "customer": customer, "has_password": bool(customer.password_hash),
        "library_url": request.app.state.urls.library_url, **context}, status_code=status_code)


def _account_customer(request: Request, session) -> Customer | None:
    current = signed_in(request, session)
    return session.get(Customer, current[0].customer_id) if current else None


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?{urlencode({'next': request.app.state.urls.accounts_url + '/account'})}",
                            status_code=303)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep):
    customer = _account_customer(request, session)
    return _account_page(request, customer) if customer else _to_login(request)


@router.post("/account/email", response_class=HTMLResponse, dependencies=CSRF)
def change_email(request: Request, session: SessionDep, new_email: Text = "", current_password: Text = ""):
    customer = _account_customer(request, session)
    if customer is None:
        return _to_login(request)
    normalized = normalize_email(new_email)
    try:
        logins.request_email_change(session, customer, normalized, current_password=current_password)
    except AccountError as exc:
        session.rollback()
        return _account_page(request, customer, email_error=str(exc), new_email=_bounded(new_email, 254),
                             status_code=422)
    session.commit()
    return templates.TemplateResponse(request, "message.html", {
        "title": "Confirm your new email address",
        "message": f"We sent a link to {normalized}. Open it to log in with that address from then on. "
                   f"Until then, log in with {customer.email} as before.",
        "link_url": "/account", "link_text": "Back to your account"})


@router.get("/account/email/confirm", response_class=HTMLResponse)
def confirm_email_page(request: Request, session: SessionDep, token: str = ""):
    change = logins.find_email_change(session, token)
    refusal = logins.email_change_refusal(change)
    if refusal is not None:
        return _link_refused(request, refusal, "/account", "Go to your account")
    return templates.TemplateResponse(request, "email_confirm.html", {"token": token, "new_email": change.new_email})


@router.post("/account/email/confirm", response_class=HTMLResponse, dependencies=CSRF)
def confirm_email(request: Request, session: SessionDep, token: Text = ""):
    try:
        customer = logins.confirm_email_change(session, token)
    except logins.LinkRefused as exc:
        session.rollback()
        return _link_refused(request, exc.refusal, "/account", "Go to your account")
    except AccountError as exc:
        session.commit()  # the link is used up all the same
        return templates.TemplateResponse(request, "message.html", {
            "title": "Your email address did not change", "message": str(exc), "alert": True}, status_code=409)
    return _signed_in(request, session, customer, f"{request.app.state.urls.accounts_url}/account")


@router.post("/account/password", response_class=HTMLResponse, dependencies=CSRF)
def change_password(request: Request, session: SessionDep, current_password: Text = "", password: Text = "",
                    password_repeat: Text = ""):
    customer = _account_customer(request, session)
    if customer is None:
        return _to_login(request)
    try:
        logins.change_password(session, customer, current_password=current_password, password=password,
                               password_repeat=password_repeat)
    except AccountError as exc:
        session.rollback()
        return _account_page(request, customer, password_error=str(exc), status_code=422)
    # Every session ended with the change, this browser's too: it gets a new one.
    return _signed_in(request, session, customer, f"{request.app.state.urls.accounts_url}/account?changed=password")

