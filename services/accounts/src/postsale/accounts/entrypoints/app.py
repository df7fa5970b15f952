"""`uvicorn --factory postsale.accounts.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.accounts.adapters.signing import SessionSigner
from postsale.accounts.config import MIGRATIONS_DIR, SERVICE, Settings
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
    return app
