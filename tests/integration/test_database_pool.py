"""The connection pool on the real PostgreSQL: a connection returned a moment ago is used without
asking the server first, and one that rested is pinged, so that one the server closed meanwhile
(a restart, a proxy's idle cut-off) is replaced instead of failing the work that took it. The same
for the reads from the event loop (`LoopReads`), whose pool opens none beyond its size and keeps
the ones it opened."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from postsale.runtime.db import LoopReads, make_engine
from postsale.runtime.settings import DatabasePoolSettings

pytestmark = pytest.mark.integration


def counting_pings(engine) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(1)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted
    return pings


def backend(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_is_pinged_only_after_it_rested_and_one_the_server_closed_is_replaced(postgres):
    url = postgres.create_database(f"pool_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url, DatabasePoolSettings(pool_size=1, max_overflow=0, pool_ping_after_idle=0.5))
    pings = counting_pings(engine)
    try:
        first = backend(engine)
        assert [backend(engine) for _ in range(5)] == [first] * 5  # the same connection, used at once
        assert pings == []

        other = create_engine(url, poolclass=NullPool)
        with other.connect() as connection:  # as a restart or a proxy's idle cut-off would
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        other.dispose()
        time.sleep(0.6)
        replaced = backend(engine)  # no error: the ping found it closed, and the pool reconnected
        assert replaced != first and pings == [1]
    finally:
        engine.dispose()


def test_a_rest_of_zero_pings_before_every_use(postgres):
    url = postgres.create_database(f"pool_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url, DatabasePoolSettings(pool_size=1, max_overflow=0, pool_ping_after_idle=0))
    pings = counting_pings(engine)
    try:
        for _ in range(4):
            backend(engine)
        assert len(pings) == 3  # every use but the first, on a connection just opened
    finally:
        engine.dispose()


PID = text("SELECT pg_backend_pid()")


async def test_reads_from_the_loop_keep_their_connections_and_replace_one_the_server_closed(postgres):
    url = postgres.create_database(f"pool_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    reads = LoopReads(engine, DatabasePoolSettings(pool_size=2, max_overflow=2, pool_ping_after_idle=0.5))
    pings = counting_pings(reads._loop_engine.sync_engine)

    async def burst() -> set[int]:
        answers = await asyncio.gather(*(reads.rows(PID, {}) for _ in range(12)))
        return {rows[0][0] for rows in answers}

    try:
        opened = await burst()
        assert len(opened) == 2  # its size, opened at once, none beyond: the other reads waited for one
        assert await burst() <= opened and pings == []  # none closed on its return, none asked first

        other = create_engine(url, poolclass=NullPool)
        with other.connect() as connection:
            for pid in opened:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.dispose()
        time.sleep(0.6)
        [(replaced,)] = await reads.rows(PID, {})  # no error: pinged, found closed, replaced
        assert replaced not in opened and pings == [1]
    finally:
        await reads.dispose()
        engine.dispose()
