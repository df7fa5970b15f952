"""`make run`: the whole suite on its embedded defaults, with a demo store.

Starts a real Kafka broker, the development mailbox and the four services on SQLite files
under `.data/`, seeds a demo store once, prints where to click, and stops everything it
started on Ctrl-C. A second run reuses `.data/`: the broker's data, the databases, the
secrets and the demo store.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from postsale_local.kafka import KafkaCluster, external_bootstrap_servers
from postsale_local.processes import (REPO_ROOT, ComponentUnavailable, free_port, port_answers, start_process,
                                      stop_process, wait_for_port)
from postsale_local.suite import SERVICES, Suite, generate_secrets

DATA = Path(os.environ.get("POSTSALE_DATA_DIR", REPO_ROOT / ".data")).resolve()
# checkout on the first port, then entitlements, accounts and notifications on the next three.
FIRST_PORT = int(os.environ.get("POSTSALE_DEV_PORT", "8001"))
PORTS = {service: FIRST_PORT + offset for offset, service in enumerate(SERVICES)}


def load_state() -> dict:
    """Secrets and ports of earlier runs, so that sessions, links and the demo store keep working."""
    path = DATA / "devrun.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("secrets", generate_secrets())
    state.setdefault("mailbox_smtp_port", 1025 if not port_answers(1025) else free_port())
    DATA.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)
    return state


def save_state(state: dict) -> None:
    (DATA / "devrun.json").write_text(json.dumps(state, indent=2))


def seed_demo_store(suite: Suite, state: dict) -> str:
    """A membership product in an offer with a price, made once; returns the offer's checkout URL."""
    demo = state.get("demo")
    if demo:
        with suite.admin("checkout") as checkout:
            found = checkout.get(f"/admin/offers/{demo['offer_id']}")
        if found.status_code == 200:
            return found.json()["checkout_url"]
    store = suite.create_store("The Creator Membership", "Creator Membership: lifetime access",
                               description="Weekly lessons, the community and every recording.")
    state["demo"] = {"product_id": store.product_id, "offer_id": store.offer_id}
    save_state(state)
    return store.checkout_url


def main() -> int:
    started = time.monotonic()
    state = load_state()
    busy = [f"{service} ({port})" for service, port in PORTS.items() if port_answers(port)]
    if busy:
        print(f"error: ports already in use: {', '.join(busy)}. Stop whatever holds them and run again.",
              file=sys.stderr)
        return 1
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    kafka = None
    mailbox = None
    suite = None
    try:
        bootstrap = external_bootstrap_servers()
        if bootstrap is None:
            print("starting Kafka (KRaft, one node)...", flush=True)
            kafka = KafkaCluster(DATA / "kafka")
            kafka.start()
            bootstrap = kafka.bootstrap_servers
        smtp_port = state["mailbox_smtp_port"]
        mailbox = start_process(
            [sys.executable, "-m", "postsale.notifications.devmailbox", "--dir", DATA / "mailbox",
             "--port", str(smtp_port)],
            log=DATA / "logs" / "mailbox.log",
        )
        wait_for_port(smtp_port, mailbox, timeout=30, log=DATA / "logs" / "mailbox.log")
        print("starting checkout, entitlements, accounts and notifications...", flush=True)
        suite = Suite(
            kafka_bootstrap_servers=bootstrap,
            ports=PORTS,
            database_urls={service: f"sqlite:///{DATA / f'{service}.db'}" for service in SERVICES},
            smtp_port=smtp_port,
            log_dir=DATA / "logs",
            secrets=state["secrets"],
            extra_env={"NOTIFICATIONS_DEV_MAILBOX_DIR": str(DATA / "mailbox")},
        )
        suite.start()
        checkout_url = seed_demo_store(suite, state)
        print(f"""
Postsale is running ({time.monotonic() - started:.0f}s to start). Open:

  Checkout (demo offer):  {checkout_url}
      pay with the test card 4242 4242 4242 4242 (4000 0000 0000 0002 is declined)
  Library:                {suite.url('entitlements')}/library
  Mailbox:                {suite.url('notifications')}/mailbox

Admin tokens, secrets and ports: {DATA / 'devrun.json'}   Logs: {DATA / 'logs'}
Press Ctrl-C to stop.
""", flush=True)
        while not stopping.wait(1.0):
            for service, process in suite.processes.items():
                if process.poll() is not None:
                    print(f"error: {service} exited; see {suite.log_path(service)}", file=sys.stderr)
                    return 1
        return 0
    except ComponentUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", flush=True)
        if suite is not None:
            suite.stop()
        if mailbox is not None:
            stop_process(mailbox)
        if kafka is not None:
            kafka.stop()


if __name__ == "__main__":
    sys.exit(main())
