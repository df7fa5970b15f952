"""Database engines and sessions. SQLite files by default, PostgreSQL when the URL names it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Hashable, Iterator, Sequence, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import MetaData, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import make_transient_to_detached, registry
from sqlalchemy.sql import Executable
from sqlmodel import Session, SQLModel, create_engine

from postsale.runtime import tracing  # noqa: F401 - spans of database transactions, once traced work begins one
from postsale.runtime.settings import DatabasePoolSettings

T = TypeVar("T")

# Constraints and indexes get names by rule, the same on SQLite and PostgreSQL, so that a
# later migration can name what it alters or drops (SQLite's batch mode needs the names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def table_registry() -> registry:
    """A registry, and so a metadata, for one service's tables.

    Services keep their tables apart from each other's (checkout and accounts each have a
    `customers` table) and each service's migrations see only its own.
    """
    return registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


def make_engine(url: str, pool: DatabasePoolSettings | None = None) -> Engine:
    """An engine for `url`; on PostgreSQL with the pool sized by `pool` (default: the
    `POSTSALE_DATABASE_POOL_*` environment)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # WAL lets the web handlers read while a consumer or the relay writes.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    pool = pool or DatabasePoolSettings()
    engine = create_engine(url, pool_size=pool.pool_size, max_overflow=pool.max_overflow,
                           pool_timeout=pool.pool_timeout, pool_recycle=pool.pool_recycle)
    _ping_when_rested(engine, pool.pool_ping_after_idle)
    return engine


_LAST_USED = "postsale.last_used"


def _ping_when_rested(engine: Engine, idle_seconds: float) -> None:
    """A pooled connection that rested `idle_seconds` or more is pinged before use, and one the
    server or a proxy closed meanwhile is replaced (with every other connection of the pool) instead
    of failing a request or a transaction.

    SQLAlchemy's own pre-ping asks the server before every use: a round trip as dear as the query
    on a one-statement read (a third of `/api/library`'s time). A connection returned a moment ago
    was alive then. Should the server die right after, the first statement on it fails, and that
    failure invalidates the whole pool, as a failed ping would; a restart that takes longer than
    `idle_seconds` finds every connection rested, and pinged."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_rested(dbapi_connection, record, _proxy) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < idle_seconds:
            return  # just opened, or returned a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise InvalidatePoolError() from error  # the pool reconnects, up to twice
            raise


def create_tables(engine: Engine) -> None:
    """Tables straight from the models, for tests; services run their migrations instead."""
    SQLModel.metadata.create_all(engine)


def database_answers(engine: Engine) -> bool:
    """Whether the database takes a query now: tells an outage (wait for it) from a failure of one
    record's work (retry a few times, then set the record aside)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure to answer is an outage here
        return False


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def one_read(engine: Engine) -> Iterator[Connection]:
    """A connection of the pool for one statement that only reads: on PostgreSQL in autocommit, so
    the server is asked once, not BEGIN, the query and ROLLBACK (each a round trip). Not on SQLite,
    where those are calls in the process and switching the mode back costs a statement more."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT") if is_postgres(engine) else connection


class LoopReads:
    """Reads of one statement for a request handler that runs in the event loop (`async def`).

    On PostgreSQL they go through psycopg's asyncio connection: no hop to the thread pool and no
    threads taking turns at the GIL. With 16 requests at once, `/api/library` cost the service
    2.0 ms of CPU a request read in the pool, 1.3 ms read in the loop. Their own pool, in
    autocommit (one round trip a read: no BEGIN, no ROLLBACK), holds `pool_size` connections,
    opened when first needed and then kept; a read beyond them waits in the loop for one. It opens
    none beyond its size: one opened at a peak and closed on its return, as the service's pool
    does, was a new server process for a good part of the reads under a steady load (PostgreSQL's
    CPU a read went from 0.17 to 0.7 ms). On SQLite (a file, no server) the read runs in the thread
    pool on the service's engine."""

    def __init__(self, engine: Engine, pool: DatabasePoolSettings | None = None) -> None:
        self._engine = engine
        self._loop_engine: AsyncEngine | None = None
        if is_postgres(engine):
            pool = pool or DatabasePoolSettings()
            self._loop_engine = create_async_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_size=pool.pool_size,
                max_overflow=0, pool_timeout=pool.pool_timeout, pool_recycle=pool.pool_recycle)
            _ping_when_rested(self._loop_engine.sync_engine, pool.pool_ping_after_idle)

    async def rows(self, statement: Executable, parameters: dict[str, Any]) -> Sequence[Row]:
        if self._loop_engine is None:
            return await run_in_threadpool(self._rows_in_a_thread, statement, parameters)
        async with self._loop_engine.connect() as connection:
            return (await connection.execute(statement, parameters)).all()

    def _rows_in_a_thread(self, statement: Executable, parameters: dict[str, Any]) -> Sequence[Row]:
        with self._engine.connect() as connection:
            return connection.execute(statement, parameters).all()

    async def dispose(self) -> None:
        if self._loop_engine is not None:
            await self._loop_engine.dispose()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A request's session, closed after it. Async, so that FastAPI does not send both its opening
    and its closing to the thread pool (each hop costs more than a small query): making a session
    does no I/O, and closing one without a transaction neither; one that still holds a connection
    (its rollback and return to the pool may wait on the database) is closed in the pool."""
    session = Session(request.app.state.engine)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def insert_for(session: Session, table):
    """An INSERT in the session's dialect, for its `ON CONFLICT` clauses (PostgreSQL or SQLite)."""
    return _dialect_insert(session)(table)


def _dialect_insert(session: Session) -> Callable:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_once(session: Session, row: SQLModel, *, keep: bool = False) -> bool:
    """Inserts `row` unless a row with its primary key exists (then nothing); True when this call
    inserted it. What happens once rests on the table's key, not on a check before the insert.

    One plain statement (`ON CONFLICT DO NOTHING`), not a read of the key and the ORM object
    flushed through the unit of work, which costs ten times the CPU. Built as a model instance, it
    has the model's defaults. With `keep`, a row this call inserted joins the session as if read
    from the database, for a transaction that goes on to read it (`session.get` finds it without a
    read) or change it (flushed as an UPDATE); otherwise `row` is not added to the session."""
    table = type(row).__table__  # type: ignore[attr-defined]
    statement = built_once(session, ("insert_once", table), lambda insert: insert(table).on_conflict_do_nothing(
        index_elements=list(table.primary_key.columns)).returning(*table.primary_key.columns))
    # A row comes back only when inserted (the driver's rowcount cannot be trusted for an upsert).
    inserted = session.execute(statement, _values_of(table, row)).first() is not None
    if inserted and keep:
        make_transient_to_detached(row)
        session.add(row)
    return inserted


def upsert(session: Session, row: SQLModel, columns: tuple[str, ...]) -> None:
    """Inserts `row`, or, when a row with its primary key exists, sets that row's `columns` to
    `row`'s: one statement (`ON CONFLICT DO UPDATE`) built once, as `insert_once`."""
    table = type(row).__table__  # type: ignore[attr-defined]

    def build(insert):
        statement = insert(table)
        return statement.on_conflict_do_update(index_elements=list(table.primary_key.columns),
                                               set_={name: statement.excluded[name] for name in columns})

    session.execute(built_once(session, ("upsert", table, columns), build), _values_of(table, row))


def _values_of(table, row: SQLModel) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in table.columns}


_BUILT: dict[tuple[str, Hashable], Any] = {}


def built_once(session: Session, name: Hashable, build: Callable[[Callable], T]) -> T:
    """The statement `build(insert)` makes (`insert`: the session's dialect's INSERT, for its
    `ON CONFLICT` clauses), built once per dialect and `name` and kept. Run it with its values as
    parameters (`session.execute(statement, values)`): SQLAlchemy then finds it compiled, where a
    statement built with `.values(...)` at each call computes its cache key again, which costs
    six times the execution (0.6 ms against 0.09 for a row of 15 columns, on SQLite in memory)."""
    key = (session.get_bind().dialect.name, name)
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build(_dialect_insert(session))
    return statement


_KEPT = "postsale.kept"
_kept_models: set[type] = set()


def keep_loaded(*models: type) -> None:
    """Rows of `models` (a store's settings and catalogue, read again and again by one request or
    batch) stay in a session's identity map once loaded, for as long as the session is open.

    SQLAlchemy's identity map holds unchanged rows weakly: `session.get(Offer, id).name` drops the
    row as soon as the expression ends, and the next `session.get` of it reads the database again
    (five times for the same offer in one payment). Only small, often-read models belong here: a
    session keeps every row of them it loads."""
    _kept_models.update(models)


@event.listens_for(Session, "loaded_as_persistent")
@event.listens_for(Session, "pending_to_persistent")  # written by this session: as good as loaded
def _keep_loaded_row(session: Session, instance) -> None:
    if type(instance) in _kept_models:
        session.info.setdefault(_KEPT, []).append(instance)


_REMEMBERED = "postsale.remembered"


def remembered(session: Session, model: type, key: Hashable, load: Callable[[], T]) -> T:
    """`load()` once per transaction for (`model`, `key`): what a batch of events reads for each
    of them and that rarely changes (the store's theme, an edited template, the webhook endpoints),
    read once for the batch. Forgotten when the transaction ends, and as soon as a `model` row is
    added, changed or deleted in this session, so the transaction always sees its own writes."""
    _forget_changed(session)  # changed since, and not flushed yet
    memo = session.info.setdefault(_REMEMBERED, {})
    if (model, key) not in memo:
        memo[(model, key)] = load()
    return memo[(model, key)]


@event.listens_for(Session, "after_transaction_end")
def _forget_at_transaction_end(session: Session, _transaction) -> None:
    session.info.pop(_REMEMBERED, None)


@event.listens_for(Session, "transient_to_pending")
def _forget_added(session: Session, instance) -> None:
    _forget_model(session, type(instance))


@event.listens_for(Session, "before_flush")
def _forget_changed(session: Session, *_flush) -> None:
    # Every flush of every session comes here: nothing to look at unless something is remembered.
    if session.info.get(_REMEMBERED):
        for instance in (*session.dirty, *session.deleted):
            _forget_model(session, type(instance))


def _forget_model(session: Session, model: type) -> None:
    memo = session.info.get(_REMEMBERED)
    if memo:
        for key in [key for key in memo if key[0] is model]:
            del memo[key]
