"""`uvicorn --factory postsale.checkout.entrypoints.app:create_app`"""

from functools import partial

from fastapi import FastAPI
from sqlmodel import select

from postsale.checkout import billing, card_expiry, handlers, recovery
from postsale.checkout.adapters.payments.port import PaymentProvider
from postsale.checkout.adapters.payments.sandbox import SandboxProvider
from postsale.checkout.adapters.payments.stripe import StripeProvider
from postsale.checkout.adapters.tables import BillingJob, CardExpiryCheck, CheckoutRecovery, SimulatedClock, Subscription
from postsale.checkout.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.checkout.entrypoints import (admin, admin_billing, backoffice_dashboard, backoffice_offers, backoffice_sales,
                                           billing_pages, buyer, funnel_pages, pages,
                                           returned_payments, webhooks)
from postsale.checkout.entrypoints.consumers import SUBSCRIPTIONS
from postsale.runtime.db import make_engine
from postsale.runtime.errors import html_errors_for_pages
from postsale.runtime import metrics
from postsale.runtime.scheduler import Scheduler
from postsale.runtime.service import create_service_app


async def billing_scheduler(app: FastAPI) -> None:
    await app.state.billing_scheduler.run()


async def card_expiry_scheduler(app: FastAPI) -> None:
    await app.state.card_expiry_scheduler.run()


async def recovery_scheduler(app: FastAPI) -> None:
    await app.state.recovery_scheduler.run()


def create_app() -> FastAPI:
    settings = Settings()
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS,
                             background=[billing_scheduler, card_expiry_scheduler, recovery_scheduler,
                                         webhooks.relay_provider_events],
                             # Dunning on the dashboard: subscriptions past due, by kind.
                             observers=[metrics.count_rows(metrics.SUBSCRIPTIONS, Subscription, ("kind", "status"))])
    app.state.secret_key = settings.secret_key
    # The provider is chosen explicitly, never by fallback: a store on Stripe has no sandbox,
    # so it can never hand out products for a test card.
    payments: PaymentProvider
    if settings.payment_provider == "stripe":
        payments = StripeProvider(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret)
    else:
        # The sandbox stands for a provider outside, so it keeps its payments through connections of
        # its own: a payment request holding one of the service's connections never waits for a
        # second from the same pool (with every connection so held, none would come).
        payments = SandboxProvider(make_engine(settings.database_url), action_base_url=app.state.urls.checkout_url)
    app.state.payments = payments
    # Renewals, retries and cancellations as they fall due; a test customer of the lifecycle
    # simulator is left to the simulator, which runs their time forward on request.
    app.state.billing_scheduler = Scheduler(
        app.state.engine, billing.SCHEDULER, BillingJob, partial(billing.run_billing_job, provider=payments),
        where=BillingJob.customer_id.not_in(select(SimulatedClock.customer_id)))  # type: ignore[attr-defined]
    app.state.card_expiry_scheduler = Scheduler(
        app.state.engine, card_expiry.SCHEDULER, CardExpiryCheck, partial(card_expiry.run_card_check, provider=payments),
        where=CardExpiryCheck.customer_id.not_in(select(SimulatedClock.customer_id)))  # type: ignore[attr-defined]
    # Attempts not paid within the store's recovery delay: `CheckoutAbandoned`.
    app.state.recovery_scheduler = Scheduler(
        app.state.engine, handlers.RECOVERY_SCHEDULER, CheckoutRecovery,
        partial(recovery.run_recovery, provider=payments, urls=app.state.urls))
    app.state.stripe_publishable_key = settings.stripe_publishable_key if settings.payment_provider == "stripe" else None
    app.include_router(pages.router)
    app.include_router(funnel_pages.router)
    app.include_router(returned_payments.router)
    app.include_router(billing_pages.billing_pages)
    app.include_router(backoffice_dashboard.pages)
    app.include_router(backoffice_offers.pages)
    app.include_router(backoffice_sales.pages)
    app.include_router(admin.admin)
    app.include_router(admin_billing.admin_billing)
    app.include_router(webhooks.webhooks)
    html_errors_for_pages(app, templates=buyer.templates, api_prefixes=("/admin", "/webhooks"))
    return app
