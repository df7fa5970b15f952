"""`uvicorn --factory postsale.checkout.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.checkout.adapters.payments import SandboxProvider, StripeGateway
from postsale.checkout.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.checkout.entrypoints import api
from postsale.checkout.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.service import create_service_app


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS)
    app.state.secret_key = settings.secret_key
    # Test cards pay only in a sandbox store: a store on Stripe must never hand out products for them.
    app.state.sandbox = SandboxProvider() if settings.payment_provider == "sandbox" else None
    app.state.stripe = (
        StripeGateway(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret)
        if settings.stripe_api_key else None
    )
    app.include_router(api.router)
    app.include_router(api.admin)
    return app
