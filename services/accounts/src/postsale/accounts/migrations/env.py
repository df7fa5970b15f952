"""Alembic environment of accounts: its tables plus the shared outbox and inbox."""

from postsale.accounts.adapters.tables import Base
from postsale.runtime.migrations import run_env

run_env(Base.metadata, database_url_variable="ACCOUNTS_DATABASE_URL")
