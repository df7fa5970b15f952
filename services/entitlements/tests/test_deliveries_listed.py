"""The seller's list of a product's deliveries while a retry commits: each delivery shows with the
attempts that its state counts, never a newer attempt beside the state from before it."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlmodel import Session

from delivery_support import (T0, Clock, Endpoint, database_url, delivery_scheduler, handle, migrated_engine, paid,
                              product, resolve_publicly)
from postsale.entitlements import handlers
from postsale.entitlements.delivery.base import RETRY_SCHEDULE
from postsale.entitlements.delivery.runner import deliveries_of
from postsale.runtime.clock import as_utc

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    engine = migrated_engine(database_url(request, tmp_path, "deliveries"))
    yield engine
    engine.dispose()


def test_a_retry_committed_while_the_list_is_read_shows_whole_or_not_at_all(engine, monkeypatch):
    resolve_publicly(monkeypatch)
    club = product(engine, "Club", "integration", endpoint_url="https://members.example.com/postsale",
                   secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    handle(engine, handlers.grant_access_for_purchase, paid(club, purchase_id="pur_1"), T0)
    clock = Clock(T0)
    scheduler = delivery_scheduler(engine, clock, Endpoint(503, 500).client())
    assert scheduler.run_due() == 1  # the first call failed: one attempt, a retry planned
    clock.now = T0 + RETRY_SCHEDULE[0]

    # The second call is made and committed right after the list's first statement has run.
    retried: list[int | None] = []

    def retry_meanwhile(_conn, _cursor, statement: str, *_args) -> None:
        if not retried and "FROM deliveries" in statement:
            retried.append(None)  # first, as the retry's own statements read deliveries too
            retried[0] = scheduler.run_due()

    event.listen(engine, "after_cursor_execute", retry_meanwhile)
    try:
        with Session(engine) as session:
            [(delivery, attempts)] = deliveries_of(session, club)
    finally:
        event.remove(engine, "after_cursor_execute", retry_meanwhile)

    assert retried == [1]
    assert delivery.attempts == len(attempts) == 1  # as it was when the list began
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 503)]
    assert as_utc(delivery.next_attempt_at) == T0 + RETRY_SCHEDULE[0]

    with Session(engine) as session:  # and the next read shows the retry whole
        [(delivery, attempts)] = deliveries_of(session, club)
    assert delivery.attempts == len(attempts) == 2
    assert [a.status_code for a in attempts] == [503, 500]
    assert as_utc(delivery.next_attempt_at) == T0 + RETRY_SCHEDULE[0] + RETRY_SCHEDULE[1]
