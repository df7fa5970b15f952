"""`uvicorn --factory postsale.accounts.entrypoints.app:create_app`"""

import asyncio
import logging

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from postsale.accounts import theme as themes
from postsale.accounts.adapters.signing import LocalSessionVerifier, SessionSigner
from postsale.accounts.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.accounts.domain.setup import MAX_FORM_BYTES
from postsale.accounts.entrypoints import admin, api, customer_pages, import_pages, login, staff_pages, theme_pages
from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.csrf import CsrfRefused
from postsale.runtime.security import STRICT_POLICY
from postsale.runtime.service import create_service_app
from postsale.runtime.staff import StaffVerifier, backoffice_problem


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS, background=[republish_theme],
                             content_security_policy=STRICT_POLICY)  # accounts' pages have no script
    app.state.signer = SessionSigner(settings.session_signing_key)
    app.state.session_verifier = LocalSessionVerifier(app.state.signer, revoked=app.state.revoked_sessions)
    app.state.staff_verifier = StaffVerifier(key=app.state.signer.public_key())
    app.state.session_hours = settings.session_hours
    app.include_router(api.router)
    app.include_router(login.router)
    # The back office's pages before the JSON admin API, whose `/admin/customers/{id}` would take `new`.
    app.include_router(staff_pages.pages)
    app.include_router(customer_pages.pages)
    app.include_router(theme_pages.pages)
    app.include_router(import_pages.pages)
    app.include_router(admin.admin)
    add_form_limits(app)
    return app


log = logging.getLogger(__name__)
API_PREFIXES = ("/.well-known", "/healthz", "/readyz", "/metrics")


def _wants_json(request: Request) -> bool:
    """Programs (the admin API with its bearer token, the published keys) read JSON; a person's
    browser, which asks for HTML, reads a page that says what to do."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept or request.url.path.startswith(API_PREFIXES):
        return True
    return request.url.path.startswith("/admin") and ("text/html" not in accept
                                                      or "authorization" in request.headers)


async def republish_theme(app: FastAPI, interval: float = 3600) -> None:
    """Publishes the theme again once a day (`accounts.customers.v1` keeps a week), so that a service
    started later still finds it; checked hourly."""
    def once() -> None:
        with Session(app.state.engine) as session:
            if themes.republish_if_due(session):
                session.commit()

    while True:
        try:
            await asyncio.to_thread(once)
        except Exception as exc:  # noqa: BLE001 - the next hour tries again
            log.warning("republishing the theme failed: %r", exc)
        await asyncio.sleep(interval)


def _problem_page(request: Request, message: str, status_code: int):
    return api.templates.TemplateResponse(request, "message.html", {
        "title": "Something in that form is not right", "message": message, "alert": True,
    }, status_code=status_code)


def add_form_limits(app: FastAPI) -> None:
    """Accounts' visitors are people: an oversized or malformed form gets a page, never JSON."""

    @app.middleware("http")
    async def refuse_oversized_forms(request: Request, call_next):
        # Before the body is read: no field of any accounts form comes near this size (but a CSV upload).
        length = request.headers.get("content-length", "")
        limit = import_pages.FORM_LIMITS.get(request.url.path, MAX_FORM_BYTES)
        if request.method == "POST" and length.isdigit() and int(length) > limit:
            if _wants_json(request):  # the admin API's clients read JSON
                return JSONResponse({"message": f"The request body is larger than {limit} bytes."}, status_code=413)
            return _problem_page(request, "That form was far larger than any account form can be. Go back, "
                                          "shorten what you typed, and send it again.", 413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, exc: RequestValidationError):
        if _wants_json(request):  # the admin API says which field is wrong
            return await request_validation_exception_handler(request, exc)
        return _problem_page(request, "That form could not be read. Go back and send it again.", 422)

    @app.exception_handler(HTTPException)
    async def page_or_json(request: Request, exc: HTTPException):
        headers = getattr(exc, "headers", None)
        if 300 <= exc.status_code < 400:  # the back office's way to its login
            return Response(status_code=exc.status_code, headers=headers)
        if request.url.path.startswith("/admin/") and not _wants_json(request) and exc.status_code < 500:
            return backoffice_problem(request, api.templates, exc.status_code, str(exc.detail), headers)
        if _wants_json(request) or exc.status_code >= 500:
            return await http_exception_handler(request, exc)
        missing = exc.status_code in (404, 405)
        return api.templates.TemplateResponse(request, "message.html", {
            "title": "This page does not exist" if missing else "This did not work",
            "message": "The address may have been mistyped, or the link was cut short. Log in to reach your "
                       "account and your library." if missing else str(exc.detail),
            "link_url": "/login", "link_text": "Log in",
        }, status_code=exc.status_code, headers=headers)

    @app.exception_handler(CsrfRefused)
    async def forged_form(request: Request, exc: CsrfRefused):
        return api.templates.TemplateResponse(request, "message.html", {
            "title": "Please send that form again", "message": exc.detail, "alert": True,
        }, status_code=403)
