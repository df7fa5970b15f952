"""`uvicorn --factory postsale.entitlements.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.entitlements.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.entitlements.entrypoints import admin, pages
from postsale.entitlements.entrypoints.consumers import SUBSCRIPTIONS
from postsale.entitlements.entrypoints.scheduler import access_reviews
from postsale.runtime.service import create_service_app


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS,
                             background=[access_reviews()])
    app.include_router(pages.router)
    app.include_router(admin.admin)
    return app
