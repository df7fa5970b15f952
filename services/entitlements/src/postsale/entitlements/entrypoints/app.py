"""`uvicorn --factory postsale.entitlements.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.entitlements.adapters.storage import LocalFolderStorage
from postsale.entitlements.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.entitlements.entrypoints import admin, admin_delivery, downloads, licenses, pages
from postsale.entitlements.entrypoints.consumers import SUBSCRIPTIONS
from postsale.entitlements.entrypoints.scheduler import access_reviews, deliveries, reconciliations
from postsale.runtime.service import create_service_app


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
    app.include_router(admin.admin)
    app.include_router(admin_delivery.admin_delivery)
    return app
