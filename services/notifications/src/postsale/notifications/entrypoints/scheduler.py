"""Notifications' timed work: reminders before a trial ends and before a yearly renewal, run by
the shared scheduler."""

from __future__ import annotations

from fastapi import FastAPI

from postsale.notifications import billing
from postsale.notifications.adapters.tables import Reminder
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import Clock, Scheduler
from postsale.runtime.service import BackgroundTask


def reminders(clock: Clock = utcnow, poll_interval: float = 1.0) -> BackgroundTask:
    """Sends each reminder when it falls due, if it still applies then (`billing.send_reminder`)."""

    async def reminders(app: FastAPI) -> None:
        scheduler = Scheduler(app.state.engine, billing.REMINDERS, Reminder, billing.send_reminder,
                              clock=clock, poll_interval=poll_interval)
        await scheduler.run()

    return reminders
