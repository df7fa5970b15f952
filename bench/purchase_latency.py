"""How long a buyer waits: from paying to access in the library, and to the confirmation email.

Starts a real Kafka broker, an SMTP server and the four services (SQLite by default, or
PostgreSQL with --postgres), makes purchases one after another over HTTP, and writes the
percentiles to bench/results/purchase_latency-<database>.json.

    .venv/bin/python bench/purchase_latency.py [--purchases 50] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import datetime, timezone

import httpx

from harness import RESULTS, machine, percentiles, running_components


def run(purchases: int, use_postgres: bool) -> dict:
    with running_components(use_postgres) as components:
        suite, smtp = components.suite, components.smtp
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
            while not any(to == address for _, to in smtp.received("")):
                time.sleep(0.005)
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
            "machine": machine(),
        }


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
