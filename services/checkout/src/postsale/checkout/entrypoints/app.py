"""`uvicorn --factory postsale.checkout.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.checkout.adapters.payments.port import PaymentProvider
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.payments.stripe import StripeProvider
from postsale.checkout.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.checkout.entrypoints import admin, pages, webhooks
from postsale.checkout.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.service import create_service_app
from postsale.runtime.errors import html_errors_for_pages


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS)
    app.state.secret_key = settings.secret_key
    # The provider is chosen explicitly, never by fallback: a store on Stripe has no sandbox,
    # so it can never hand out products for a test card.
    payments: PaymentProvider
    if settings.payment_provider == "stripe":
        payments = StripeProvider(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret)
    else:
        payments = SandboxProvider(app.state.engine, action_base_url=app.state.urls.checkout_url)
    app.state.payments = payments
    app.state.stripe_publishable_key = settings.stripe_publishable_key if settings.payment_provider == "stripe" else None
    app.include_router(pages.router)
    app.include_router(admin.admin)
    app.include_router(webhooks.webhooks)
    html_errors_for_pages(app, templates=pages.templates, api_prefixes=("/admin", "/webhooks"))
    return app
