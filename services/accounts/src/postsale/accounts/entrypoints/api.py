"""Accounts' HTTP side: account setup, login, logout and the published session keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from postsale.accounts import handlers
from postsale.accounts.adapters.tables import Customer
from postsale.runtime.auth import SESSION_COOKIE, current_customer
from postsale.runtime.db import SessionDep
from postsale.runtime.web import normalize_email, templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
router = APIRouter()
# The setup page waits this many one-second refreshes for the purchase to arrive from checkout.
SETUP_WAIT_REFRESHES = 30


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


def _signed_in(request: Request, session: SessionDep, customer: Customer, destination: str) -> RedirectResponse:
    hours = request.app.state.session_hours
    login = handlers.start_session(session, customer, timedelta(hours=hours))
    session.commit()
    token = request.app.state.signer.sign(customer_id=customer.id, email=customer.email, session_id=login.id,
                                          lifetime=timedelta(hours=hours))
    response = RedirectResponse(destination, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=hours * 3600, httponly=True, samesite="lax",
                        secure=request.app.state.urls.accounts_url.startswith("https://"), path="/")
    return response


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep, token: str = "", purchase: str = "", wait: int = 0):
    setup = handlers.find_setup_token(session, token) if token else None
    if setup is None and token and wait < SETUP_WAIT_REFRESHES:
        # Checkout sends the buyer here at once; the purchase reaches accounts a moment later.
        query = urlencode({"token": token, "purchase": purchase, "wait": wait + 1})
        return templates.TemplateResponse(request, "preparing.html", {"refresh_url": f"/setup?{query}"})
    problem = handlers.setup_token_problem(setup)
    if problem:
        return templates.TemplateResponse(request, "setup.html", {"problem": problem, "login_url": "/login"},
                                          status_code=410 if setup else 404)
    customer = session.get(Customer, setup.customer_id)
    return templates.TemplateResponse(request, "setup.html", {"token": token, "email": customer.email})


@router.post("/setup", response_class=HTMLResponse)
def setup_account(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
                  first_name: Annotated[str, Form()] = "", last_name: Annotated[str, Form()] = "",
                  password: Annotated[str, Form()] = "", password_repeat: Annotated[str, Form()] = ""):
    try:
        customer = handlers.activate_account(session, token=token, first_name=first_name, last_name=last_name,
                                             password=password, password_repeat=password_repeat)
    except handlers.AccountError as exc:
        session.rollback()
        setup = handlers.find_setup_token(session, token) if token else None
        email = session.get(Customer, setup.customer_id).email if setup else ""
        return templates.TemplateResponse(
            request, "setup.html",
            {"token": token, "email": email, "error": str(exc), "first_name": first_name, "last_name": last_name},
            status_code=422,
        )
    return _signed_in(request, session, customer, request.app.state.urls.library_url)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "", email: str = ""):
    if current_customer(request) is not None:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return templates.TemplateResponse(request, "login.html", {"next": next, "email": email})


@router.post("/login", response_class=HTMLResponse)
def log_in(request: Request, session: SessionDep, email: Annotated[str, Form()] = "",
           password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""):
    normalized = normalize_email(email)
    customer = handlers.authenticate(session, email=normalized, password=password) if normalized else None
    if customer is None:
        return templates.TemplateResponse(
            request, "login.html",
            {"next": next, "email": email, "error": "That email and password do not match an account."},
            status_code=401,
        )
    return _signed_in(request, session, customer, _safe_next(request, next))


@router.post("/logout")
def log_out(request: Request, session: SessionDep) -> Response:
    customer = current_customer(request)
    if customer is not None:
        handlers.end_session(session, customer.session_id)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
