"""Errors a person reads as a page, errors a program reads as JSON.

A browser that reaches a missing offer or a stale checkout gets an HTML page with the message;
an API client (the admin API, webhooks, a script that asks for JSON) gets `{"detail": ...}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.templating import Jinja2Templates
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from postsale.runtime.messaging import EventTooLarge
from postsale.runtime.staff import backoffice_problem, is_backoffice_page
from postsale.runtime.web import shared_templates

TITLES = {400: "Something is wrong with this request", 401: "Please log in", 403: "Not allowed",
          404: "Not found", 405: "Not found", 409: "This cannot be done now", 410: "No longer available"}


def html_errors_for_pages(app: FastAPI, *, templates: Jinja2Templates, api_prefixes: tuple[str, ...]) -> None:
    """Render HTTP errors outside `api_prefixes` with the shared `error.html` page, and those of the
    back office's pages (inside `/admin`) in the back office's layout."""

    @app.exception_handler(StarletteHTTPException)
    async def page_or_json(request: Request, exc: StarletteHTTPException):
        if is_backoffice_page(request) and exc.status_code < 500:
            return backoffice_problem(request, templates, exc.status_code, str(exc.detail),
                                      getattr(exc, "headers", None))
        wants_json = "application/json" in request.headers.get("accept", "")
        if wants_json or request.url.path.startswith(api_prefixes) or exc.status_code >= 500:
            return await http_exception_handler(request, exc)
        # A person who reaches a form's address with GET (a bookmark, a reload) meets a page that is
        # not there for them, as the other services say it.
        message = "This page does not exist: check the address, or go back." if exc.status_code == 405 else exc.detail
        return templates.TemplateResponse(
            request, "error.html",
            {"title": TITLES.get(exc.status_code, "Sorry"), "message": message},
            status_code=exc.status_code, headers=getattr(exc, "headers", None),
        )


def backoffice_errors(app: FastAPI) -> None:
    """Every service's default: an error on a back-office page is a page in its layout, any other
    error JSON. A service whose customer pages need more registers its own handler instead (see
    `html_errors_for_pages`), which replaces this one."""

    @app.exception_handler(StarletteHTTPException)
    async def page_or_json(request: Request, exc: StarletteHTTPException):
        if is_backoffice_page(request) and exc.status_code < 500:
            return backoffice_problem(request, shared_templates(), exc.status_code, str(exc.detail),
                                      getattr(exc, "headers", None))
        return await http_exception_handler(request, exc)


def refuse_oversized_events(app: FastAPI) -> None:
    """A request whose change would publish an event larger than Kafka takes is refused with a 413
    and changes nothing (its transaction is never committed); every input has limits before this,
    so reaching it means a limit is missing."""

    @app.exception_handler(EventTooLarge)
    async def too_large(_request: Request, exc: EventTooLarge) -> JSONResponse:
        return JSONResponse({"detail": f"This request is too large to be processed: {exc}"}, status_code=413)
