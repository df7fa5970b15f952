"""Each service's migrations build exactly the tables its models describe, on SQLite and on
PostgreSQL: a model changed without a migration fails here."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate, target_metadata

pytestmark = pytest.mark.integration

SERVICES = ["checkout", "entitlements", "accounts", "notifications"]
CHANGES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


def service(name: str) -> tuple[MetaData, Path]:
    """The service's models (with the outbox and inbox) and its migrations folder."""
    tables = importlib.import_module(f"postsale.{name}.adapters.tables")
    config = importlib.import_module(f"postsale.{name}.config")
    return target_metadata(tables.Base.metadata), config.MIGRATIONS_DIR


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request, tmp_path):
    """Makes a fresh, empty database and returns its URL."""

    def create(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        return request.getfixturevalue("postgres").create_database(f"{name}_{uuid.uuid4().hex[:8]}")

    return create


def differences(engine: Engine, models: MetaData) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), models)


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@pytest.mark.parametrize("name", SERVICES)
def test_migrations_build_the_models_and_run_once(name, new_database):
    models, migrations_dir = service(name)
    engine = make_engine(new_database(name))
    try:
        migrate(engine, migrations_dir)
        assert differences(engine, models) == []
        head = ScriptDirectory(str(migrations_dir)).get_current_head()
        assert revision(engine) == head

        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
        migrate(engine, migrations_dir)
        assert [s for s in statements if s.lstrip().upper().startswith(CHANGES)] == []
        assert revision(engine) == head
    finally:
        engine.dispose()


def test_replicas_starting_together_on_postgresql_migrate_once(postgres):
    url = postgres.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    # Processes, as replicas are: alembic keeps its running migration in module state.
    code = ("import sys; from postsale.runtime.db import make_engine; from postsale.runtime.migrations import migrate; "
            "from postsale.checkout.config import MIGRATIONS_DIR; migrate(make_engine(sys.argv[1]), MIGRATIONS_DIR)")
    replicas = [subprocess.Popen([sys.executable, "-c", code, url]) for _ in range(4)]
    assert [replica.wait(timeout=60) for replica in replicas] == [0] * len(replicas)
    models, _ = service("checkout")
    engine = make_engine(url)
    try:
        assert differences(engine, models) == []
    finally:
        engine.dispose()
