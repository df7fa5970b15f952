"""Entitlements' timed work: access that ends by itself, run by the shared scheduler."""

from __future__ import annotations

from fastapi import FastAPI

from postsale.entitlements import handlers
from postsale.entitlements.adapters.tables import AccessReview
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import Clock, Scheduler
from postsale.runtime.service import BackgroundTask


def access_reviews(clock: Clock = utcnow, poll_interval: float = 1.0) -> BackgroundTask:
    """Ends access when its period is over or its billing ended (`handlers.review_access`)."""

    async def access_reviews(app: FastAPI) -> None:
        scheduler = Scheduler(app.state.engine, handlers.REVIEWS, AccessReview, handlers.review_access,
                              clock=clock, poll_interval=poll_interval)
        await scheduler.run()

    return access_reviews
