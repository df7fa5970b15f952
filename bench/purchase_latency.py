"""How long a buyer waits: from paying to access in the library, and to the confirmation email.

Starts a real Kafka broker, an SMTP server and the four services (SQLite by default, or
PostgreSQL with --postgres), makes purchases one after another over HTTP, and writes the
percentiles to bench/results/purchase_latency-<database>.json.

    .venv/bin/python bench/purchase_latency.py [--purchases 50] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

from postsale_local.kafka import KafkaCluster
from postsale_local.postgres import PostgresCluster
from postsale_local.processes import free_port
from postsale_local.smtp import SmtpInbox
from postsale_local.suite import SERVICES, Suite

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(pick(0.95) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1), "mean_ms": round(statistics.fmean(ordered) * 1000, 1)}


def run(purchases: int, use_postgres: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="postsale-bench-"))
    kafka = KafkaCluster(work / "kafka")
    postgres = PostgresCluster() if use_postgres else None
    smtp = SmtpInbox()
    suite = None
    try:
        kafka.start()
        smtp.start()
        if postgres:
            postgres.start()
            urls = {s: postgres.create_database(s) for s in SERVICES}
        else:
            urls = {s: f"sqlite:///{work / f'{s}.db'}" for s in SERVICES}
        suite = Suite(kafka_bootstrap_servers=kafka.bootstrap_servers, database_urls=urls, smtp_port=smtp.port,
                      log_dir=work / "logs", ports={s: free_port() for s in SERVICES})
        suite.start()
        store = suite.create_store("Bench", "Bench offer", amount=100)
        product_id, offer_id = store.product_id, store.offer_id
        entitlements, checkout = suite.admin("entitlements"), suite.admin("checkout")

        pay, access, email = [], [], []
        for _ in range(purchases):
            address = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            browser = httpx.Client(base_url=suite.url("checkout"), timeout=10)
            checkout_url = browser.post(f"/offers/{offer_id}/checkout", data={"email": address}).headers["location"]
            started = time.perf_counter()
            paid = browser.post(f"{checkout_url}/pay", data={"card_number": "4242424242424242"})
            pay.append(time.perf_counter() - started)
            customer_id = checkout.get("/admin/purchases", params={"email": address}).json()[0]["customer_id"]
            while not entitlements.get("/admin/access", params={"customer_id": customer_id,
                                                                "product_id": product_id}).json()["has_access"]:
                time.sleep(0.005)
            access.append(time.perf_counter() - started)
            smtp.wait_for(lambda m: m["To"] == address)
            email.append(time.perf_counter() - started)
            assert paid.status_code == 303
        return {
            "benchmark": "purchase_latency",
            "database": "postgresql" if use_postgres else "sqlite",
            "purchases": purchases,
            "pay_request": percentiles(pay),
            "paid_to_access_granted": percentiles(access),
            "paid_to_confirmation_email": percentiles(email),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        }
    finally:
        if suite:
            suite.stop()
        smtp.stop()
        if postgres:
            postgres.stop()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=50)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    result = run(args.purchases, args.postgres)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"purchase_latency-{result['database']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
