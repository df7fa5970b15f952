"""`uvicorn --factory postsale.checkout.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.checkout.adapters.payments import SandboxProvider, StripeGateway
from postsale.checkout.config import SERVICE, Settings
from postsale.checkout.entrypoints import api
from postsale.checkout.entrypoints.consumers import SUBSCRIPTIONS
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
        title="Postsale checkout",
        lifespan=service_lifespan(service=SERVICE, engine=engine,
                                  bootstrap_servers=KafkaSettings().bootstrap_servers, subscriptions=SUBSCRIPTIONS),
    )
    app.state.engine = engine
    app.state.urls = urls
    app.state.admin_token = settings.admin_token
    app.state.secret_key = settings.secret_key
    app.state.payment_provider = settings.payment_provider
    app.state.sandbox = SandboxProvider()
    app.state.stripe = (
        StripeGateway(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret)
        if settings.stripe_api_key else None
    )
    app.state.session_verifier = SessionVerifier(f"{urls.accounts_url}/.well-known/jwks.json")
    app.include_router(api.router)
    app.include_router(api.admin)
    add_operational_routes(app)
    return app
