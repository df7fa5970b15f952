"""Alembic environment of checkout: its tables plus the shared outbox and inbox."""

from postsale.checkout.adapters.tables import Base
from postsale.runtime.migrations import run_env

run_env(Base.metadata, database_url_variable="CHECKOUT_DATABASE_URL")
