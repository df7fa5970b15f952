"""Alembic environment of notifications: its tables plus the shared outbox and inbox."""

from postsale.notifications.adapters.tables import Base
from postsale.runtime.migrations import run_env

run_env(Base.metadata, database_url_variable="NOTIFICATIONS_DATABASE_URL")
