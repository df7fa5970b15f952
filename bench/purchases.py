"""Purchases under load: what checkout's HTTP side alone sustains, what the four services sustain
together, and how long a paid purchase takes to become access at a paced rate, beside a raw
Kafka hop on the same broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from harness import TimedInbox, percentiles
from loadgen import Connection, HttpError, paced
from postsale_local.suite import Suite

CONFIRMATION = "Your purchase"  # the subject of the confirmation email notifications sends
CARD = {"card_number": "4242424242424242"}  # the sandbox's card that is always accepted
DOWNSTREAM = ("entitlements", "accounts", "notifications")


def libpq(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://`) as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class Shop:
    """The benchmark's store, and where to see each stage of a purchase happen."""

    suite: Suite
    smtp: TimedInbox
    offer_id: str
    product_id: str
    entitlements_db: str
    accounts_db: str
    # (service, table): [sequential scans, rows they read] of the benchmark's own counting.
    scanned: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def new_email(self) -> str:
        return f"buyer-{uuid.uuid4().hex[:16]}@example.com"

    async def start_checkout(self, checkout: Connection, email: str) -> str:
        """The offer page's form (the buyer's email); returns the payment page's path."""
        started = await checkout.post_form(f"/offers/{self.offer_id}/checkout", {"email": email})
        if started.status != 303:
            raise HttpError(f"checkout answered {started.status}: {started.text()[:300]}")
        return started.headers["location"]

    async def pay(self, checkout: Connection, payment_path: str) -> str:
        """The payment form, paid with the sandbox's card; returns the purchase's id."""
        paid = await checkout.post_form(f"{payment_path}/pay", CARD)
        if paid.status != 303:
            raise HttpError(f"pay answered {paid.status}: {paid.text()[:300]}")
        return parse_qs(urlsplit(paid.headers["location"]).query)["purchase"][0]

    @asynccontextmanager
    async def counting(self) -> AsyncIterator[tuple[psycopg.AsyncConnection, psycopg.AsyncConnection]]:
        """Connections for `stage_counts`, to entitlements' and accounts' databases, that always
        scan whole tables (so what they read is known exactly)."""
        async with await psycopg.AsyncConnection.connect(self.entitlements_db, autocommit=True) as ent, \
                await psycopg.AsyncConnection.connect(self.accounts_db, autocommit=True) as acc:
            for conn in (ent, acc):
                for plan in ("indexscan", "indexonlyscan", "bitmapscan"):
                    await conn.execute(f"SET enable_{plan} = off")
            yield ent, acc

    async def access_check_says_yes(self, purchase_ids: list[str]) -> str:
        """Asks the access check (`GET /admin/access`) about purchases seen granted in the database:
        that what the benchmark polls is what the access check answers."""
        async with await psycopg.AsyncConnection.connect(self.entitlements_db, autocommit=True) as ent:
            customers = await (await ent.execute("SELECT customer_id FROM purchases WHERE id = ANY(%s)",
                                                 (purchase_ids,))).fetchall()
        token = self.suite.admin_token("entitlements")
        admin = Connection(self.suite.url("entitlements"), {"Authorization": f"Bearer {token}"})
        try:
            yes = 0
            for (customer_id,) in customers:
                answer = await admin.get(f"/admin/access?customer_id={customer_id}&product_id={self.product_id}")
                yes += answer.status == 200 and b'"has_access":true' in answer.body
        finally:
            await admin.close()
        return f"{yes} of {len(purchase_ids)}"

    async def stage_counts(self, entitlements: psycopg.AsyncConnection, accounts: psycopg.AsyncConnection) -> dict:
        """How many purchases have reached each stage after paid: granted (rows in the table the
        access check reads), the customer's account created, the confirmation accepted by the
        SMTP server. Each count reads its whole table, and `scanned` keeps what that read, so
        PostgreSQL's counters can be told apart from the services' own reads."""
        granted = (await (await entitlements.execute("SELECT count(*) FROM access_grants")).fetchone())[0]
        created = (await (await accounts.execute("SELECT count(*) FROM customers")).fetchone())[0]
        for key, rows in ((("entitlements", "access_grants"), granted), (("accounts", "customers"), created)):
            self.scanned[key] = [self.scanned.get(key, [0, 0])[0] + 1, self.scanned.get(key, [0, 0])[1] + rows]
        return {"granted": granted, "account_created": created,
                "email_accepted": len(self.smtp.received(CONFIRMATION))}


def database_activity(database_urls: dict[str, str]) -> dict[str, dict]:
    """PostgreSQL's own counters for each service's database: transactions committed, rows read
    and written, and per table the sequential scans and the rows they read."""
    out = {}
    for service, url in database_urls.items():
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            c, r, i, u, d = conn.execute(
                "SELECT xact_commit, tup_returned + tup_fetched, tup_inserted, tup_updated, tup_deleted "
                "FROM pg_stat_database WHERE datname = current_database()").fetchone()
            tables = conn.execute("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables").fetchall()
        out[service] = {"commits": c, "rows_read": r, "rows_inserted": i, "rows_updated": u, "rows_deleted": d,
                        "tables": {name: {"seq_scans": scans or 0, "seq_rows_read": rows or 0}
                                   for name, scans, rows in tables}}
    return out


def per_purchase(before: dict, after: dict, purchases: int, own: dict[tuple[str, str], list[int]]) -> dict:
    """The counters' growth over a phase, per purchase, less the benchmark's own counting (`own`:
    its scans, each a transaction, and the rows they read, per service and table); per database
    the three tables whose sequential scans read the most rows."""
    out: dict[str, dict] = {}
    for db, now in after.items():
        was = before[db]
        mine = {t: own.get((db, t), [0, 0]) for t in now["tables"]}
        # Each of the benchmark's counts is a transaction of its own, and reads its table.
        own_work = {"commits": sum(scans for scans, _ in mine.values()),
                    "rows_read": sum(rows for _, rows in mine.values())}
        out[db] = {k: round((now[k] - was[k] - own_work.get(k, 0)) / purchases, 1) for k in now if k != "tables"}
        scanned = {t: {"seq_scans": round((c["seq_scans"] - was["tables"].get(t, {}).get("seq_scans", 0)
                                           - mine[t][0]) / purchases, 2),
                       "seq_rows_read": round((c["seq_rows_read"] - was["tables"].get(t, {}).get("seq_rows_read", 0)
                                               - mine[t][1]) / purchases, 1)}
                   for t, c in now["tables"].items()}
        out[db]["most_scanned"] = dict(sorted(scanned.items(), key=lambda kv: -kv[1]["seq_rows_read"])[:3])
    return out


@contextmanager
def paused(suite: Suite, services: tuple[str, ...]) -> Iterator[None]:
    """The services' processes stopped (SIGSTOP) and continued afterwards: while they are, the
    machine is checkout's, Kafka's and PostgreSQL's alone."""
    pids = [suite.processes[s].pid for s in services]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def buy_for(shop: Shop, *, buyers: int, seconds: float, failures: list[str] | None = None) -> list[float]:
    """`buyers` buyers, each buying (email, then pay) again as soon as the last purchase was
    answered, for `seconds`; returns when each purchase was paid, in seconds from the start.
    A refused purchase is added to `failures` and the buyer goes on."""
    paid: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def buyer() -> None:
        checkout = Connection(shop.suite.url("checkout"))
        try:
            while time.perf_counter() < end:
                try:
                    await shop.pay(checkout, await shop.start_checkout(checkout, shop.new_email()))
                except HttpError as exc:
                    if failures is not None:
                        failures.append(str(exc)[:300])
                    continue
                paid.append(time.perf_counter() - start)
        finally:
            await checkout.close()

    await asyncio.gather(*(buyer() for _ in range(buyers)))
    return paid


async def http_side_alone(shop: Shop, *, buyers: int, seconds: float) -> dict:
    """The floor for throughput: purchases per second that checkout's HTTP side answers with the
    downstream services paused (kept under Kafka's 10 s consumer session, so nobody is evicted
    from its group), Kafka and PostgreSQL running and checkout's relay publishing."""
    failures: list[str] = []
    with paused(shop.suite, DOWNSTREAM):
        paid = await buy_for(shop, buyers=buyers, seconds=seconds, failures=failures)
    in_time = sum(1 for p in paid if p < seconds)
    return {"buyers": buyers, "seconds": seconds, "paid": len(paid), "paid_in_time": in_time,
            "per_second": round(in_time / seconds, 1), "failed": len(failures),
            "first_failure": failures[0] if failures else None}


async def wait_until_caught_up(shop: Shop, target: dict, timeout: float) -> float:
    """Seconds until every stage counts at least `target`'s (or the timeout)."""
    start = time.perf_counter()
    async with shop.counting() as (ent, acc):
        while time.perf_counter() - start < timeout:
            counts = await shop.stage_counts(ent, acc)
            if all(counts[k] >= target[k] for k in counts):
                break
            await asyncio.sleep(0.25)
    return time.perf_counter() - start


async def throughput(shop: Shop, *, buyers: int, seconds: float, drain_timeout: float) -> dict:
    """Purchases through all four services: buyers buy as fast as checkout answers for `seconds`;
    every second the count at each stage is taken. A purchase is through when the slowest
    stage has counted it, so the sustained rate is the slowest stage's count at the end of the
    window over the window. Then the backlog is left to drain (up to `drain_timeout`)."""
    async with shop.counting() as (ent, acc):
        base = await shop.stage_counts(ent, acc)
        samples: list[dict] = []
        start = time.perf_counter()
        failures: list[str] = []
        buying = asyncio.create_task(buy_for(shop, buyers=buyers, seconds=seconds, failures=failures))
        paid: list[float] = []
        tick = 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick - time.perf_counter()))
            counts = await shop.stage_counts(ent, acc)
            if buying.done() and not paid:
                paid = buying.result()
            sample = {"second": tick, **{k: counts[k] - base[k] for k in counts}}
            samples.append(sample)
            total_paid = len(paid) if paid else None
            if total_paid is not None and all(sample[k] >= total_paid for k in base):
                break
            if tick >= seconds + drain_timeout:
                break
    for sample in samples:
        sample["paid"] = sum(1 for p in paid if p < sample["second"])
    stages = ["paid", "granted", "account_created", "email_accepted"]
    at_end = next(s for s in samples if s["second"] >= seconds)
    through = min(at_end[k] for k in stages)
    return {
        "buyers": buyers, "seconds": seconds, "paid": len(paid), "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "paid_per_second": round(at_end["paid"] / seconds, 1),
        "through_per_second": round(through / seconds, 1),
        "slowest_stage": min(stages, key=lambda k: at_end[k]),
        "backlog_at_end": {k: at_end["paid"] - at_end[k] for k in stages[1:]},
        "drained_after_seconds": round(samples[-1]["second"] - seconds, 1),
        "drained": all(samples[-1][k] >= len(paid) for k in stages),
        "per_second": samples,
    }


async def prepare_checkouts(shop: Shop, count: int, *, buyers: int) -> list[tuple[str, str]]:
    """(email, payment page path) of `count` checkouts that got as far as the payment form."""
    emails = [shop.new_email() for _ in range(count)]
    out: list[tuple[str, str]] = []

    async def worker(mine: list[str]) -> None:
        checkout = Connection(shop.suite.url("checkout"))
        try:
            for email in mine:
                out.append((email, await shop.start_checkout(checkout, email)))
        finally:
            await checkout.close()

    await asyncio.gather(*(worker(emails[i::buyers]) for i in range(buyers)))
    return out


class ConnectionPool:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.idle: list[Connection] = []
        self.all: list[Connection] = []

    def take(self) -> Connection:
        if self.idle:
            return self.idle.pop()
        connection = Connection(self.base_url)
        self.all.append(connection)
        return connection

    def give_back(self, connection: Connection) -> None:
        self.idle.append(connection)

    async def close(self) -> None:
        for connection in self.all:
            await connection.close()


async def paid_to_access(shop: Shop, *, rate: float, seconds: float, poll: float = 0.002,
                         max_in_flight: int = 16, timeout: float = 90) -> dict:
    """Open loop: payments start at `rate` per second on checkouts prepared beforehand, whether or
    not earlier ones have been answered. For each, the time from checkout's answer (the purchase
    is paid and its event committed to the outbox) until its access row is in entitlements'
    database (what the access check reads), polled every `poll` seconds for all purchases
    still waiting in one indexed query; and until its confirmation reached the SMTP server.
    When checkout cannot answer `rate` payments a second, at most `max_in_flight` wait at once
    and the rest start late: `answered_per_second` and `start_lateness` say so."""
    count = int(rate * seconds)
    checkouts = await prepare_checkouts(shop, count, buyers=16)
    sent_at: dict[str, float] = {}
    paid_at: dict[str, float] = {}
    email_of: dict[str, str] = {}
    visible_at: dict[str, float] = {}
    failures: list[str] = []
    pool = ConnectionPool(shop.suite.url("checkout"))
    done = asyncio.Event()

    async def pay(i: int) -> None:
        email, path = checkouts[i]
        checkout = pool.take()
        try:
            sent = time.perf_counter()
            purchase_id = await shop.pay(checkout, path)
            paid_at[purchase_id], sent_at[purchase_id], email_of[purchase_id] = time.perf_counter(), sent, email
        except HttpError as exc:
            failures.append(str(exc)[:300])
        finally:
            pool.give_back(checkout)

    async def watch() -> None:
        async with await psycopg.AsyncConnection.connect(shop.entitlements_db, autocommit=True) as ent:
            while not done.is_set() or len(visible_at) < len(paid_at):
                waiting = [p for p in paid_at if p not in visible_at]
                if waiting:
                    asked = time.perf_counter()
                    rows = await (await ent.execute(
                        "SELECT purchase_id FROM access_grants WHERE purchase_id = ANY(%s) AND status = 'active'",
                        (waiting,))).fetchall()
                    for (purchase_id,) in rows:
                        visible_at[purchase_id] = asked
                await asyncio.sleep(poll)

    watcher = asyncio.create_task(watch())
    lateness = await paced(rate, count, pay, max_in_flight=max_in_flight, give_up_after=2 * seconds)
    done.set()
    try:
        await asyncio.wait_for(watcher, timeout)
    except asyncio.TimeoutError:
        pass
    await pool.close()
    emails = {to: t for t, to in shop.smtp.received(CONFIRMATION)}
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and any(email_of[p] not in emails for p in paid_at):
        await asyncio.sleep(0.1)
        emails = {to: t for t, to in shop.smtp.received(CONFIRMATION)}
    access = [visible_at[p] - paid_at[p] for p in paid_at if p in visible_at]
    answered = sorted(paid_at.values())
    confirmed = await shop.access_check_says_yes(list(visible_at)[:50])
    return {
        "rate": rate, "seconds": seconds, "scheduled": count, "started": len(lateness), "paid": len(paid_at),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None, "not_visible": len(paid_at) - len(access),
        "poll_ms": poll * 1000, "access_check_confirms": confirmed,
        "answered_per_second": round((len(answered) - 1) / (answered[-1] - answered[0]), 1) if len(answered) > 1 else 0,
        "start_lateness": percentiles(lateness),
        "pay_request": percentiles([paid_at[p] - sent_at[p] for p in paid_at]),
        "paid_to_access": percentiles(access),
        "pay_sent_to_access": percentiles([visible_at[p] - sent_at[p] for p in paid_at if p in visible_at]),
        "paid_to_email": percentiles([emails[email_of[p]] - paid_at[p] for p in paid_at if email_of[p] in emails]),
        "samples_ms": [round(x * 1000, 2) for x in access],
    }


async def kafka_hop(bootstrap_servers: str, *, rate: float, seconds: float, value_bytes: int = 900) -> dict:
    """The floor for paid -> access: one record through the same broker, from `send()` on an
    idempotent producer with acks from all replicas (as the outbox relay sends) to a plain
    aiokafka consumer reading it, paced like the purchases."""
    topic = f"bench.hop.{uuid.uuid4().hex[:8]}"
    partition = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    sent: dict[int, float] = {}
    took: list[float] = []
    count = int(rate * seconds)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"a first record, so the producer knows the partition's leader")
        consumer.assign([partition])
        await consumer.start()
        await consumer.seek_to_end(partition)
        received = asyncio.Event()

        async def receive() -> None:
            async for record in consumer:
                took.append(time.perf_counter() - sent[int(record.key)])
                if len(took) == count:
                    received.set()
                    return

        receiver = asyncio.create_task(receive())
        value = b"x" * value_bytes

        async def send(i: int) -> None:
            sent[i] = time.perf_counter()
            await (await producer.send(topic, value, key=str(i).encode()))

        await paced(rate, count, send)
        try:
            await asyncio.wait_for(received.wait(), 30)
        except asyncio.TimeoutError:
            pass
        receiver.cancel()
    finally:
        await consumer.stop()
        await producer.stop()
    return {"rate": rate, "records": count, "received": len(took), "value_bytes": value_bytes,
            "produce_to_consume": percentiles(took), "samples_ms": [round(x * 1000, 2) for x in took]}
