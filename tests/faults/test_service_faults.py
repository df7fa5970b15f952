"""Faults that leave the broker and the database up, on one run of the suite (see conftest.py):
each service SIGKILLed three times during load; the outbox relay killed between publishing and
marking; the SMTP relay down for a while, then back. Last, the checker is shown to catch what
it checks for."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import create_engine, text

from postsale.contracts import topics
from postsale_local.suite import SERVICES
from tests.support import eventually

pytestmark = pytest.mark.fault


def test_each_service_killed_three_times_during_load_loses_and_repeats_nothing(faulty):
    load = faulty.load(minimum=30).start()
    load.wait_for(2)
    for round in range(1, 4):
        started = time.monotonic()
        for service in SERVICES:
            # Strike while work is in flight: right after the next purchase went through. The
            # others go on meanwhile; each comes back while the next is struck.
            load.wait_for(len(load.paid) + 1)
            faulty.suite.kill(service)
            faulty.suite.start_service(service, wait=False)
        for service in SERVICES:
            faulty.suite.wait_ready(service)
        print(f"\n[fault] round {round}: {', '.join(SERVICES)} each SIGKILLed and restarted "
              f"({time.monotonic() - started:.0f}s, {len(load.paid)} purchases so far)")
    load.stop()
    # A kill of notifications right after the SMTP relay took an email sends it again under a new
    # Message-ID (docs/operations.md, Known issues; pinned by the test of that window below):
    # counted here, not failed on, so that this test fails only on something else.
    faulty.assert_invariant("each service SIGKILLed 3 times", load)
    assert len(load.paid) >= 30 and load.refunded and faulty.offers.subscription in load.paid.values()


# The relay's window is held open on purpose, on PostgreSQL: a trigger on checkout's outbox makes
# the relay's "mark sent" wait for an advisory lock the test holds. The relay has published (the
# records are on the topic) and cannot mark; checkout is SIGKILLed right then.
LOCK = 7_240_412  # the advisory lock the trigger waits for

HOLD_MARKS = f"""
CREATE FUNCTION fault_hold_outbox_marks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared({LOCK});
    PERFORM pg_advisory_unlock_shared({LOCK});
    RETURN NEW;
END $$;
CREATE TRIGGER fault_hold_outbox_marks BEFORE UPDATE ON outbox FOR EACH ROW
    WHEN (OLD.sent_at IS NULL AND NEW.sent_at IS NOT NULL) EXECUTE FUNCTION fault_hold_outbox_marks();
"""


async def event_ids_on(kafka, topic: str, expected: int, timeout: float = 30) -> list[str]:
    """The `ce_id` of every record on `topic`, once at least `expected` are there."""
    consumer = AIOKafkaConsumer(kafka.topic(topic), **kafka.client_kwargs(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    ids: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(ids) < expected and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                ids += [dict(r.headers)["ce_id"].decode() for r in records]
    finally:
        await consumer.stop()
    return ids


def test_the_relay_killed_between_publish_and_mark_publishes_again_and_nothing_happens_twice(faulty):
    checkout_db = create_engine(faulty.suite.database_urls["checkout"])
    load = faulty.load(minimum=20, interval=0.5).start()
    load.wait_for(3)
    with checkout_db.connect() as holder:
        holder.execute(text(f"SELECT pg_advisory_lock({LOCK})"))
        with checkout_db.begin() as ddl:
            ddl.execute(text(HOLD_MARKS))

        def in_the_window() -> list[str]:
            """The events published but not marked sent, once the relay waits to mark them."""
            with checkout_db.connect() as look:
                waiting = look.execute(text("SELECT count(*) FROM pg_stat_activity "
                                            "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'")).scalar()
                unsent = look.execute(text("SELECT event_id FROM outbox WHERE sent_at IS NULL AND topic = :topic"),
                                      {"topic": topics.PURCHASES.name}).scalars().all()
            if not (waiting and unsent):
                return []
            published = set(asyncio.run(event_ids_on(faulty.kafka, topics.PURCHASES.name, 10**6, timeout=2)))
            return [event_id for event_id in unsent if event_id in published]

        # The next purchases' PurchaseCompleted go out; their marks wait on the lock.
        caught = eventually(in_the_window, timeout=60)
        faulty.suite.kill("checkout")
        holder.execute(text(f"SELECT pg_advisory_unlock({LOCK})"))
    # Waits for the killed relay's transaction to end (rolled back: its client is gone).
    with checkout_db.begin() as ddl:
        ddl.execute(text("DROP TRIGGER fault_hold_outbox_marks ON outbox"))
        ddl.execute(text("DROP FUNCTION fault_hold_outbox_marks()"))
    with checkout_db.connect() as look:
        unmarked = look.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND event_id = ANY(:ids)"),
                                {"ids": caught}).scalar()
    assert unmarked == len(caught), "the killed relay's marks were not committed"
    faulty.suite.start_service("checkout")
    load.stop()
    faulty.assert_invariant("relay killed between publish and mark", load)

    with checkout_db.connect() as look:
        rows = look.execute(text("SELECT count(*) FROM outbox WHERE topic = :topic"),
                            {"topic": topics.PURCHASES.name}).scalar()
    checkout_db.dispose()
    ids = asyncio.run(event_ids_on(faulty.kafka, topics.PURCHASES.name, rows + len(caught)))
    again = [event_id for event_id in caught if ids.count(event_id) == 2]
    print(f"[fault] checkout SIGKILLed with {len(caught)} events published but not marked sent; published again "
          f"after the restart: {len(again)}; {len(ids)} records on {topics.PURCHASES.name} for {rows} outbox rows; "
          f"each copy handled once (the invariant above)")
    assert again == caught, "each event caught in the window is on the topic twice"


def test_the_smtp_relay_down_for_a_while_then_back_sends_every_email_once(faulty):
    load = faulty.load(minimum=20, interval=0.5).start()
    load.wait_for(3)
    faulty.smtp.stop()
    down = len(load.paid)
    load.wait_for(down + 6)  # purchases go on while no email can go out
    faulty.smtp.start()
    load.stop()
    faulty.assert_invariant("SMTP relay down, then back", load)
    engine = create_engine(faulty.suite.database_urls["notifications"])
    with engine.connect() as look:
        retried = look.execute(text("SELECT count(*) FROM emails WHERE attempts > 1 AND \"to\" = ANY(:buyers)"),
                               {"buyers": list(load.paid)}).scalar()
    engine.dispose()
    print(f"[fault] SMTP down during {len(load.paid) - down} purchases or more; emails sent only on a retry: {retried}")
    assert retried >= 6, "the emails of the purchases made during the outage failed first, then went out"


def test_notifications_killed_after_the_relay_took_an_email_delivers_it_once(faulty):
    """The dispatcher's window, held open: the SMTP server has the message and holds back its answer,
    so notifications cannot yet mark it sent; notifications is SIGKILLed then, and sends it again
    once the email's claim runs out after the restart. The reader must still get one email (one
    Message-ID)."""
    faulty.smtp.held.clear()
    faulty.smtp.holding.set()
    load = faulty.load(minimum=3, interval=0.5).start()
    try:
        assert faulty.smtp.held.wait(120), "a sender waits after handing an email over"
        key = faulty.smtp.messages[-1]["X-Postsale-Email-Key"]
        faulty.suite.kill("notifications")
    finally:
        faulty.smtp.holding.clear()
    faulty.suite.start_service("notifications")
    load.stop()
    # Sent again when its claim (`CLAIM_LEASE`, a minute) is over.
    deadline = time.monotonic() + 150
    while len(faulty.smtp.with_key(key)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    handed_over = faulty.smtp.with_key(key)
    print(f"\n[fault] notifications SIGKILLed after the relay accepted {key}; the relay received it "
          f"{len(handed_over)} times, as {len({m['Message-ID'] for m in handed_over})} Message-ID(s)")
    assert len(handed_over) >= 2, "the window was not hit: the email was not sent again after the restart"
    assert len({m["Message-ID"] for m in handed_over}) == 1
    faulty.assert_invariant("notifications killed between the relay's acceptance and the mark", load)


def test_the_checker_would_catch_a_lost_purchase_a_second_email_and_a_dead_letter(faulty):
    """The invariant is not vacuous: on the same run (so last in this module), a purchase a buyer
    paid that checkout does not have, an email received twice and a dead letter are each found."""
    from dataclasses import replace
    from email.utils import make_msgid

    from aiokafka import AIOKafkaProducer

    from postsale.runtime.messaging.deadletters import dead_letter_topic
    from tests.faults.invariant import check

    ledger = replace(faulty.ledger, paid={**faulty.ledger.paid, "ghost@example.com": faulty.offers.one_time})
    first = faulty.smtp.messages[0]
    again = copy.copy(first)
    del again["Message-ID"]
    again["Message-ID"] = make_msgid(domain="postsale.test")

    async def dead_letter() -> None:
        producer = AIOKafkaProducer(**faulty.kafka.client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(faulty.kafka.topic(dead_letter_topic("checkout")), b"a record that failed")
        finally:
            await producer.stop()

    # What the run shows before: settled, with nothing but what earlier tests left for good.
    settled = eventually(lambda: (report := check(faulty.suite, faulty.smtp, faulty.kafka, faulty.ledger)).settled
                         and report, timeout=150)
    before = set(settled.problems)
    asyncio.run(dead_letter())
    faulty.smtp.messages.append(again)
    try:
        problems = set(check(faulty.suite, faulty.smtp, faulty.kafka, ledger).problems)
    finally:
        faulty.smtp.messages.remove(again)
    found = problems - before
    print("\n[fault] the checker on a doctored run found:\n  " + "\n  ".join(sorted(found)))
    assert found == {
        f"ghost@example.com paid for {faulty.offers.one_time}; checkout has 0 purchases of it",
        f"email {first['X-Postsale-Email-Key']} received 2 times (distinct Message-IDs)",
        f"1 records on {faulty.kafka.topic('checkout.dead-letters')}",
    }
