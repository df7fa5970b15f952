"""`uvicorn --factory postsale.accounts.entrypoints.app:create_app`"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from postsale.accounts.adapters.signing import SessionSigner
from postsale.accounts.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.accounts.domain.setup import MAX_FORM_BYTES
from postsale.accounts.entrypoints import api
from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.service import create_service_app


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS)
    app.state.signer = SessionSigner(settings.session_signing_key)
    app.state.session_hours = settings.session_hours
    app.include_router(api.router)
    add_form_limits(app)
    return app


def _problem_page(request: Request, message: str, status_code: int):
    return api.templates.TemplateResponse(request, "message.html", {
        "title": "Something in that form is not right", "message": message, "alert": True,
    }, status_code=status_code)


def add_form_limits(app: FastAPI) -> None:
    """Accounts' visitors are people: an oversized or malformed form gets a page, never JSON."""

    @app.middleware("http")
    async def refuse_oversized_forms(request: Request, call_next):
        # Before the body is read: no field of any accounts form comes near this size.
        length = request.headers.get("content-length", "")
        if request.method == "POST" and length.isdigit() and int(length) > MAX_FORM_BYTES:
            return _problem_page(request, "That form was far larger than any account form can be. Go back, "
                                          "shorten what you typed, and send it again.", 413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, _exc: RequestValidationError):
        return _problem_page(request, "That form could not be read. Go back and send it again.", 422)
