"""Entitlements' timed work, run by the shared scheduler: access that ends by itself, deliveries
and their retries (third-party calls among them), and the regular reconciliation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import httpx
from fastapi import FastAPI

from postsale.entitlements import changes, handlers
from postsale.entitlements import reconciliation
from postsale.entitlements.adapters.tables import AccessReview, DeliveryRun, ReconciliationRun
from postsale.entitlements.delivery.runner import DELIVERIES, run_delivery
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import Clock, Scheduler
from postsale.runtime.service import BackgroundTask


def access_reviews(clock: Clock = utcnow, poll_interval: float = 1.0) -> BackgroundTask:
    """Ends access when its period is over or its billing ended (`handlers.review_access`)."""

    async def access_reviews(app: FastAPI) -> None:
        scheduler = Scheduler(app.state.engine, changes.REVIEWS, AccessReview, handlers.review_access,
                              clock=clock, poll_interval=poll_interval)
        await scheduler.run()

    return access_reviews


def deliveries(clock: Clock = utcnow, poll_interval: float = 1.0) -> BackgroundTask:
    """Runs deliveries that wait (third-party calls, and retries of any type) when they are due
    (`delivery.runner.run_delivery`), with one HTTP client for the calls."""

    async def deliveries(app: FastAPI) -> None:
        with httpx.Client(headers={"accept": "application/json"}) as http:
            handle = partial(run_delivery, settings=app.state.delivery_settings, urls=app.state.urls, http=http)
            scheduler = Scheduler(app.state.engine, DELIVERIES, DeliveryRun, handle, clock=clock,
                                  poll_interval=poll_interval)
            await scheduler.run()

    return deliveries


def reconciliations(clock: Clock = utcnow, poll_interval: float = 60.0) -> BackgroundTask:
    """Reconciles every `ENTITLEMENTS_RECONCILE_INTERVAL_HOURS` (`reconciliation.run_scheduled`)."""

    async def reconciliations(app: FastAPI) -> None:
        settings = app.state.delivery_settings
        interval = timedelta(hours=settings.reconcile_interval_hours)
        await asyncio.to_thread(reconciliation.ensure_scheduled, app.state.engine, interval, clock())
        scheduler = Scheduler(app.state.engine, reconciliation.RECONCILIATIONS, ReconciliationRun,
                              partial(reconciliation.run_scheduled, settings=settings), clock=clock,
                              poll_interval=poll_interval)
        await scheduler.run()

    return reconciliations
