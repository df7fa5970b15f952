"""What a growing history costs: the library and the access check as the access ledger grows,
and the outbox relay as its table fills with rows already sent.

Other customers' history is bulk-loaded straight into the service's PostgreSQL database
(COPY), shaped like the rows the services write: per customer a customer row, two purchases
of one product each with their grants and grant ledger entries, and for every second customer
a full refund that revoked the second grant (a third ledger entry).
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg

from harness import percentiles
from loadgen import Connection, sequential

LEDGER_TABLES = ("customers", "purchases", "purchase_products", "access_grants", "access_ledger")
BULK_PRODUCTS = [(f"prod_bulk{n:012x}", f"Course {n}", "membership") for n in range(40)]
CUSTOMER_COLUMNS = "id, email, ledger_seq, updated_at"
PURCHASE_COLUMNS = ("id, customer_id, email, offer_id, offer_name, order_id, access_days, on_cancel, on_pause, "
                    "on_partial_refund, completed_at, event_id")
PURCHASE_PRODUCT_COLUMNS = "purchase_id, product_id, name, delivery_type"
GRANT_COLUMNS = ("id, customer_id, product_id, product_name, delivery_type, source, purchase_id, status, reason, "
                 "granted_at, changed_at, last_seq, cause_event_id, cause_event_type")
LEDGER_COLUMNS = ("id, seq, customer_id, email, product_id, grant_id, action, reason, actor, cause_event_id, "
                  "cause_event_type, purchase_id, created_at")
COMPLETED = "postsale.purchase.completed"
REFUNDED = "postsale.refund.issued"


def ledger_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM access_ledger").fetchone()[0]


def _customer_history(rng: random.Random, base: datetime) -> dict[str, list[str]]:
    """One other customer's rows, as COPY text lines per table."""
    hexid = lambda: f"{rng.getrandbits(64):016x}"  # noqa: E731 - the services' ids: a prefix and 16 hex digits
    event_id = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))  # noqa: E731
    customer, email = f"cus_{hexid()}", f"c{hexid()}@example.org"
    out: dict[str, list[str]] = {t: [] for t in LEDGER_TABLES}
    bought = base + timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
    refunded = rng.random() < 0.5
    seq = 0
    for n, (product_id, name, delivery) in enumerate(rng.sample(BULK_PRODUCTS, 2)):
        purchase, grant, event = f"pur_{hexid()}", f"grant_{hexid()}", event_id()
        at = (bought + timedelta(days=30 * n)).isoformat()
        seq += 1
        revoked = refunded and n == 1
        status, reason, last_seq = ("revoked", "full refund", seq + 1) if revoked else ("active", "purchase", seq)
        out["purchases"].append(f"{purchase}\t{customer}\t{email}\toffer_{hexid()}\t{name} offer\t"
                                f"ord_{hexid()}\t\\N\tperiod_end\tkeep\tkeep\t{at}\t{event}")
        out["purchase_products"].append(f"{purchase}\t{product_id}\t{name}\t{delivery}")
        out["access_grants"].append(f"{grant}\t{customer}\t{product_id}\t{name}\t{delivery}\tpurchase\t{purchase}\t"
                                    f"{status}\t{reason}\t{at}\t{at}\t{last_seq}\t{event}\t{COMPLETED}")
        out["access_ledger"].append(f"entry_{hexid()}\t{seq}\t{customer}\t{email}\t{product_id}\t{grant}\tgrant\t"
                                    f"purchase\tcustomer\t{event}\t{COMPLETED}\t{purchase}\t{at}")
        if revoked:
            seq += 1
            out["access_ledger"].append(f"entry_{hexid()}\t{seq}\t{customer}\t{email}\t{product_id}\t{grant}\t"
                                        f"revoke\tfull refund\tprovider\t{event_id()}\t{REFUNDED}\t{purchase}\t{at}")
    out["customers"].append(f"{customer}\t{email}\t{seq}\t{bought.isoformat()}")
    return out


COLUMNS = {"customers": CUSTOMER_COLUMNS, "purchases": PURCHASE_COLUMNS, "purchase_products": PURCHASE_PRODUCT_COLUMNS,
           "access_grants": GRANT_COLUMNS, "access_ledger": LEDGER_COLUMNS}


def _chunk(rng: random.Random, base: datetime, customers: int) -> tuple[dict[str, str], int]:
    """COPY text per table for `customers` other customers, and how many ledger rows it holds."""
    lines: dict[str, list[str]] = {t: [] for t in LEDGER_TABLES}
    for _ in range(customers):
        for table, rows in _customer_history(rng, base).items():
            lines[table] += rows
    return {t: "\n".join(rows) + "\n" for t, rows in lines.items()}, len(lines["access_ledger"])


def load_ledger(database_url: str, target_rows: int, *, seed: int = 13) -> dict:
    """Adds other customers' history until the access ledger holds about `target_rows` rows,
    with COPY; then VACUUM ANALYZE, as autovacuum would have done to a table that grew slowly,
    and a checkpoint.
    The next chunk is made while the server takes the last one: two cores, both busy."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn, ThreadPoolExecutor(1) as maker:
        have = ledger_rows(conn)
        rng = random.Random(seed + have)
        base = datetime.now(timezone.utc) - timedelta(days=2 * 365)
        planned = have
        # ~2.5 ledger rows a customer: a third of what is missing never overshoots; chunks keep memory small.
        next_size = lambda: min(20_000, (target_rows - planned) // 3 + 1)  # noqa: E731
        pending = maker.submit(_chunk, rng, base, next_size()) if planned < target_rows else None
        while pending is not None:
            chunk, rows = pending.result()
            planned += rows
            pending = maker.submit(_chunk, rng, base, next_size()) if planned < target_rows else None
            with conn.transaction():
                for table in LEDGER_TABLES:
                    with conn.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                        copy.write(chunk[table])
        loaded = time.perf_counter() - started
        for table in LEDGER_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")  # the load's writes flushed now, not during the measurement
        return {"ledger_rows": ledger_rows(conn), "added": planned - have, "load_seconds": round(loaded, 1),
                "vacuum_seconds": round(time.perf_counter() - started - loaded, 1)}


async def ledger_costs(entitlements_url: str, *, session_cookie: str, admin_token: str, customer_id: str,
                       product_id: str, product_name: str, requests: int) -> dict:
    """What one `/library` page and one access check cost the logged-in customer, one request at a
    time on one connection (a cost per request: nothing is queued before it)."""
    library = Connection(entitlements_url, {"Cookie": f"postsale_session={session_cookie}"})
    admin = Connection(entitlements_url, {"Authorization": f"Bearer {admin_token}"})
    try:
        page = await sequential(library, "/library", requests,
                                check=lambda a: a.status == 200 and product_name in a.text())
        check = await sequential(admin, f"/admin/access?customer_id={customer_id}&product_id={product_id}",
                                 requests, check=lambda a: a.status == 200 and b'"has_access":true' in a.body)
    finally:
        await library.close()
        await admin.close()
    return {"library": percentiles(page), "access_check": percentiles(check)}


def load_sent_outbox_rows(database_url: str, target_rows: int) -> dict:
    """Fills checkout's outbox with rows already sent, copies of a real one (value and headers),
    until it holds `target_rows`; then VACUUM ANALYZE and a checkpoint."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        if target_rows > have:
            # Generated in the server: a million rows of ~1.3 kB would take minutes through Python.
            conn.execute("""
                INSERT INTO outbox (event_id, topic, key, headers, value, created_at, sent_at, attempts)
                SELECT gen_random_uuid()::text, t.topic, t.key, t.headers, t.value,
                       now() - make_interval(secs => n), now() - make_interval(secs => n), 1
                FROM generate_series(1, %s) AS n,
                     (SELECT topic, key, headers, value FROM outbox WHERE sent_at IS NOT NULL
                      ORDER BY id LIMIT 1) AS t""", (target_rows - have,))
        loaded = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE outbox")
        conn.execute("CHECKPOINT")  # the load's writes flushed now, not during the measurement
        return {"outbox_rows": conn.execute("SELECT count(*) FROM outbox").fetchone()[0],
                "load_seconds": round(loaded, 1), "vacuum_seconds": round(time.perf_counter() - started - loaded, 1)}


def relay_rate(database_url: str, *, rows: int, topic: str = "bench.relay.v1", timeout: float = 120) -> dict:
    """Checkout's own outbox relay, in the running service: `rows` pending rows (copies of a real
    purchase event, to a topic nobody reads) are added in one transaction; the rate is taken from
    the `sent_at` the relay wrote, between its first batch and its last, so the wait for its next
    poll (it is woken by commits in its own process only) is not counted."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        marker = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        conn.execute("""
            INSERT INTO outbox (event_id, topic, key, headers, value, created_at, attempts)
            SELECT gen_random_uuid()::text, %s, t.key, t.headers, t.value, now(), 0
            FROM generate_series(1, %s) AS n,
                 (SELECT key, headers, value FROM outbox WHERE topic <> %s ORDER BY id LIMIT 1) AS t""",
                     (topic, rows, topic))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = conn.execute("SELECT count(*) FROM outbox WHERE id > %s AND sent_at IS NULL",
                                (marker,)).fetchone()[0]
            if left == 0:
                break
            time.sleep(0.2)
        first, last, batches, sent = conn.execute(
            "SELECT min(sent_at), max(sent_at), count(DISTINCT sent_at), count(sent_at) FROM outbox WHERE id > %s",
            (marker,)).fetchone()
        first_batch = conn.execute("SELECT count(*) FROM outbox WHERE id > %s AND sent_at = %s",
                                   (marker, first)).fetchone()[0]
    seconds = (last - first).total_seconds() if first and last else 0.0
    return {"rows": rows, "sent": sent, "batches": batches, "seconds": round(seconds, 3),
            "per_second": round((sent - first_batch) / seconds, 1) if seconds > 0 else None}
