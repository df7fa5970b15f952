"""`uvicorn --factory postsale.entitlements.entrypoints.app:create_app`"""

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException

from postsale.entitlements.adapters.storage import LocalFolderStorage
from postsale.entitlements.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.entitlements.entrypoints import (admin, admin_delivery, backoffice_access, backoffice_operations,
                                               backoffice_products, downloads, licenses, pages)
from postsale.entitlements.entrypoints.consumers import SUBSCRIPTIONS
from postsale.entitlements.entrypoints.scheduler import access_reviews, deliveries, reconciliations
from postsale.runtime.service import create_service_app
from postsale.runtime.staff import backoffice_problem, is_backoffice_page


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS,
                             background=[access_reviews(), deliveries(), reconciliations()])
    app.state.delivery_settings = settings
    app.state.storage = LocalFolderStorage(settings.storage_dir)
    app.include_router(pages.router)
    app.include_router(downloads.router)
    app.include_router(licenses.router)
    app.include_router(backoffice_products.pages)
    app.include_router(backoffice_access.pages)
    app.include_router(backoffice_operations.pages)
    app.include_router(admin.admin)
    app.include_router(admin_delivery.admin_delivery)
    add_problem_pages(app)
    return app


# Programs read these as JSON; everything else is a customer's page.
API_PREFIXES = ("/admin", "/api", "/licenses", "/healthz", "/readyz", "/metrics")
NOT_FOUND = ("This page does not exist", "The address may have been mistyped, or what it led to was removed. "
                                         "Everything you have is in your library.")


def add_problem_pages(app: FastAPI) -> None:
    """A customer who reaches a wrong address or sends a forged form gets a page with the way to the
    library, never raw JSON."""

    @app.exception_handler(HTTPException)
    async def page_or_json(request: Request, exc: HTTPException):
        if is_backoffice_page(request) and exc.status_code < 500:
            return backoffice_problem(request, pages.templates, exc.status_code, str(exc.detail),
                                      getattr(exc, "headers", None))
        if request.url.path.startswith(API_PREFIXES) or exc.status_code >= 500 \
                or "application/json" in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        title, message = NOT_FOUND if exc.status_code in (404, 405) else ("This did not work", str(exc.detail))
        return pages.templates.TemplateResponse(request, "problem.html", {
            "status": exc.status_code, "title": title, "message": message,
            "library_url": request.app.state.urls.library_url}, status_code=exc.status_code,
            headers=getattr(exc, "headers", None))
