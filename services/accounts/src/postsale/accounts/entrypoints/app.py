"""`uvicorn --factory postsale.accounts.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.accounts.adapters.signing import SessionSigner
from postsale.accounts.config import SERVICE, Settings
from postsale.accounts.entrypoints import api
from postsale.accounts.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.auth import SessionVerifier
from postsale.runtime.db import make_engine
from postsale.runtime.service import service_lifespan
from postsale.runtime.settings import KafkaSettings, PublicUrls
from postsale.runtime.web import add_operational_routes, configure_logging


def create_app() -> FastAPI:
    settings = Settings()
    configure_logging(SERVICE)
    engine = make_engine(settings.database_url)
    urls = PublicUrls()
    app = FastAPI(
        title="Postsale accounts",
        lifespan=service_lifespan(service=SERVICE, engine=engine,
                                  bootstrap_servers=KafkaSettings().bootstrap_servers, subscriptions=SUBSCRIPTIONS),
    )
    app.state.engine = engine
    app.state.urls = urls
    app.state.admin_token = settings.admin_token
    app.state.signer = SessionSigner(settings.session_signing_key)
    app.state.session_hours = settings.session_hours
    app.state.session_verifier = SessionVerifier(f"{urls.accounts_url}/.well-known/jwks.json")
    app.include_router(api.router)
    add_operational_routes(app)
    return app
