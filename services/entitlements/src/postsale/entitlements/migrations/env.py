"""Alembic environment of entitlements: its tables plus the shared outbox and inbox."""

from postsale.entitlements.adapters.tables import Base
from postsale.runtime.migrations import run_env

run_env(Base.metadata, database_url_variable="ENTITLEMENTS_DATABASE_URL")
