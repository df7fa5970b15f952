"""Alembic migrations per service: `migrate` at start-up, `run_env` as each service's env.py.

A service keeps its migrations in `postsale/<service>/migrations/`, inside its package, and
passes that folder to `create_service_app`. No alembic.ini is needed at run time; the one in
`services/<service>/` is for developers writing migrations (README, Operations).
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from logging.config import fileConfig
from pathlib import Path
from typing import Any, Iterator

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator

from postsale.runtime.db import NAMING_CONVENTION, is_postgres, make_engine
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.messaging.outbox import OutboxMessage

# One key for every service: each has a database of its own.
ADVISORY_LOCK_KEY = int.from_bytes(b"postsale", "big")


def migrate(engine: Engine, migrations_dir: Path) -> None:
    """`alembic upgrade head` on the engine's database, with the migrations in `migrations_dir`."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("path_separator", "os")
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, fit to migrate on: holding the migration lock on
    PostgreSQL, not enforcing foreign keys on SQLite."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # Batch mode alters a SQLite table by copying it, dropping it and renaming the
            # copy; with foreign keys enforced, dropping a referenced table fails. The pragma
            # is ignored inside a transaction, hence before it.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if is_postgres(engine):
                    # Replicas starting together: one upgrades, the others wait here until it
                    # commits and then find nothing left to do. Released with the transaction.
                    connection.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
                yield connection
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def target_metadata(service_metadata: MetaData) -> MetaData:
    """What a service's migrations create: its own tables and the shared outbox and inbox."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for table in (*service_metadata.tables.values(), OutboxMessage.__table__, InboxMessage.__table__):
        table.to_metadata(metadata)
    return metadata


def run_env(service_metadata: MetaData, *, database_url_variable: str) -> None:
    """The body of a service's env.py.

    Migrates on the connection `migrate` passes; from the alembic command line, on the
    database named by `database_url_variable` (online, or as SQL with `--sql`).
    """
    if context.config.config_file_name:  # the command line: say what it does
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    options: dict[str, Any] = {
        "target_metadata": target_metadata(service_metadata),
        # Batch operations even when generated against PostgreSQL: every migration has to run
        # on SQLite too, and on PostgreSQL they are plain ALTER statements.
        "render_as_batch": True,
        "render_item": _render_item,
    }
    if context.is_offline_mode():
        context.configure(url=_database_url(database_url_variable), literal_binds=True,
                          dialect_opts={"paramstyle": "named"}, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    with ExitStack() as stack:
        connection = context.config.attributes.get("connection")
        if connection is None:  # the alembic command line
            engine = make_engine(_database_url(database_url_variable))
            stack.callback(engine.dispose)
            connection = stack.enter_context(migration_connection(engine))
        context.configure(connection=connection, **options)
        # A no-op in the transaction of `migration_connection`, which commits.
        with context.begin_transaction():
            context.run_migrations()


def _database_url(variable: str) -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(variable)
    if not url:
        raise SystemExit(f"Set {variable} to the URL of the database to migrate.")
    return url


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    # A migration is history and must not depend on the models' library: SQLModel's column
    # types (AutoString, UTCDateTime) are written as the SQLAlchemy types they store as.
    if type_ == "type" and isinstance(obj, TypeDecorator) and type(obj).__module__.startswith("sqlmodel."):
        return f"sa.{obj.impl!r}"
    return False
