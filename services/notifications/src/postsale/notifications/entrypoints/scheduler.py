"""Notifications' timed work, run by the shared scheduler: reminders before a trial ends and
before a yearly renewal; and follow-ups (access-ending reminders, sequence steps, rule checks)."""

from __future__ import annotations

from fastapi import FastAPI

from postsale.notifications import billing, followups
from postsale.notifications.adapters.tables import FollowUp, Reminder
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


def follow_up_scheduler(engine, clock: Clock = utcnow, poll_interval: float = 1.0) -> Scheduler:
    return Scheduler(engine, followups.FOLLOW_UPS, FollowUp, followups.run_follow_up, clock=clock,
                     poll_interval=poll_interval)


def follow_ups(clock: Clock = utcnow, poll_interval: float = 1.0) -> BackgroundTask:
    """Runs each follow-up when it falls due (`followups.run_follow_up`)."""

    async def follow_ups(app: FastAPI) -> None:
        await follow_up_scheduler(app.state.engine, clock, poll_interval).run()

    return follow_ups
