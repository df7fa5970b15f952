"""Timed emails other than billing's reminders, run by one scheduler: the access-ending reminder,
the steps of follow-up sequences and the checks of follow-up rules. Each row decides when it falls
due whether its email still applies (`access`, `sequences`, `rules`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from postsale.notifications import access, rules, sequences
from postsale.notifications.adapters.tables import FollowUp

FOLLOW_UPS = access.FOLLOW_UPS
RUN = {
    "access_ending": access.send_ending_reminder,
    "sequence_step": sequences.send_step,
    "rule": rules.check_rule,
}


def run_follow_up(session: Session, row: FollowUp, now: datetime) -> None:
    """The scheduler's handler: the row's kind decides what it does."""
    RUN[row.kind](session, row, now)
