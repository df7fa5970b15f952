"""The seller's theme of the customer pages: kept by accounts, published for every service.
Each use case runs inside the caller's transaction and never commits."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlmodel import Session

from postsale.accounts.adapters.tables import StoreTheme
from postsale.accounts.config import SERVICE
from postsale.accounts.handlers import AccountError
from postsale.contracts import ThemeChanged
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.messaging import publish_later
from postsale.runtime.theme import Theme, problems

SOURCE = f"/postsale/{SERVICE}"
THEME_ID = "store"
# `accounts.customers.v1` keeps 7 days: the theme goes out again well within that.
REPUBLISH_AFTER = timedelta(days=1)


class UnreadableTheme(AccountError):
    def __init__(self, found: list[str]) -> None:
        super().__init__("This theme would make text hard to read, so it was not saved. " + " ".join(found))
        self.problems = found


def current(session: Session) -> Theme:
    row = session.get(StoreTheme, THEME_ID)
    return Theme.model_validate_json(row.settings) if row else Theme()


def set_theme(session: Session, theme: Theme) -> StoreTheme:
    """Saves the seller's theme and publishes it (`ThemeChanged`); refuses one with unreadable text."""
    found = problems(theme)
    if found:
        raise UnreadableTheme(found)
    now = utcnow()
    row = session.get(StoreTheme, THEME_ID) or StoreTheme(id=THEME_ID, settings="{}")
    row.settings = theme.model_dump_json(exclude_none=True)
    row.updated_at = row.published_at = now
    session.add(row)
    _publish(session, row, now)
    return row


def republish_if_due(session: Session, now: datetime | None = None) -> bool:
    """Publishes the theme again when it last went out `REPUBLISH_AFTER` ago, so a service that
    starts later still finds it on the topic."""
    now = now or utcnow()
    row = session.get(StoreTheme, THEME_ID)
    if row is None or now - as_utc(row.published_at) < REPUBLISH_AFTER:
        return False
    row.published_at = now
    session.add(row)
    _publish(session, row, as_utc(row.updated_at))
    return True


def _publish(session: Session, row: StoreTheme, changed_at: datetime) -> None:
    publish_later(session, ThemeChanged(theme_id=THEME_ID, settings=json.loads(row.settings), changed_at=changed_at),
                  source=SOURCE)
