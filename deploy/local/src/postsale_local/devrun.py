"""`make run`: the whole suite on its embedded defaults, with a demo store.

Starts a real Kafka broker, the development mailbox and the four services on SQLite files
under `.data/`, seeds a demo store once, prints where to click, and stops everything it
started on Ctrl-C. A second run reuses `.data/`: the broker's data, the databases, the
secrets and the demo store.
"""

from __future__ import annotations

import json
import os
import secrets
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


DEMO_COUPON = "LAUNCH20"


def seed_demo_store(suite: Suite, state: dict) -> dict[str, str]:
    """The demo store, made once: a one-time offer with an order bump and an upsell funnel, a
    subscription with a free trial, a payment plan and a coupon, their products delivered as a
    store's would be (lessons, a file, a booking, a registration). Returns each offer's checkout URL."""
    demo = state.get("demo_store")
    if demo:
        with suite.admin("checkout") as checkout:
            if all(checkout.get(f"/admin/offers/{offer_id}").status_code == 200 for offer_id in demo.values()):
                return {name: f"{suite.url('checkout')}/offers/{offer_id}" for name, offer_id in demo.items()}

    def offer(name: str, product_id: str, amount: int, **settings) -> dict:
        return suite.create_offer({"name": name, "product_ids": [product_id],
                                   "price": {"amount": amount, "currency": "EUR"}, **settings})

    workbook = offer("The Creator Workbook", _workbook(suite), 1500)
    coaching = offer("A 1:1 coaching call", _fulfilled(suite, "Coaching call", "Sixty minutes on your plan.", "booking", {
        "length": "60 minutes", "how to book": "the booking link comes by email within a day"}), 9900)
    masterclass = offer("The Launch Masterclass, live", _fulfilled(suite, "Launch Masterclass", "Three hours, live.",
                                                                    "webinar", {"session": "first Tuesday, 18:00 CET"}),
                        19900)
    replay = offer("The Launch Masterclass replay", _course(suite, "Launch Masterclass replay", "", {
        "The replay": ["Part 1: the plan", "Part 2: the launch week"]}), 4900)
    membership = offer(
        "Creator Membership: lifetime access", _course(suite, "The Creator Membership",
                                                       "Weekly lessons, the community and every recording.", {
            "Start here": ["Welcome", "How the membership works"],
            "Week 1: your first product": ["Find the problem", "Make the smallest version"]}), 4900,
        order_bump_offer_id=workbook["id"],
        upsells=[{"offer_id": coaching["id"]},
                 {"offer_id": masterclass["id"], "downsell_offer_id": replay["id"]}])
    circle = offer("The Inner Circle", _course(suite, "The Inner Circle", "Monthly live Q&A and the private forum.", {
        "This month": ["The Q&A recording"]}), 1900,
        billing={"type": "subscription", "interval": "month", "trial_days": 14})
    course = offer("The Pro Course in 3 payments", _course(suite, "The Pro Course", "", {
        "Module 1": ["Positioning"], "Module 2 (opens a week later)": ["Pricing"]}, drip_days=7), 9900,
        billing={"type": "payment_plan", "interval": "month", "instalments": 3})
    with suite.admin("checkout") as checkout:
        checkout.post("/admin/coupons", json={"code": DEMO_COUPON, "percent_off": 20,
                                              "offer_ids": [membership["id"]]}).raise_for_status()
    state["demo_store"] = {"one_time": membership["id"], "subscription": circle["id"], "payment_plan": course["id"]}
    save_state(state)
    return {name: f"{suite.url('checkout')}/offers/{offer_id}" for name, offer_id in state["demo_store"].items()}


def _course(suite: Suite, name: str, description: str, sections: dict[str, list[str]], *, drip_days: int = 0) -> str:
    """A hosted membership with its sections and lessons (each section after the first opens
    `drip_days` later than the one before)."""
    product_id = suite.create_product(name, description=description)
    with suite.admin("entitlements") as entitlements:
        for number, (title, lessons) in enumerate(sections.items()):
            section = entitlements.post(f"/admin/products/{product_id}/sections", json={"title": title})
            section.raise_for_status()
            for lesson in lessons:
                entitlements.post(f"/admin/products/{product_id}/sections/{section.json()['id']}/lessons", json={
                    "title": lesson, "drip_days": number * drip_days,
                    "body": f"{lesson}: the demo store's lesson.\n\nWrite your own from the back office."},
                ).raise_for_status()
    return product_id


def _workbook(suite: Suite) -> str:
    """A download with one file."""
    product_id = suite.create_product("The Creator Workbook", description="Printable worksheets for every lesson.",
                                      delivery_type="download")
    with suite.admin("entitlements") as entitlements:
        entitlements.post(f"/admin/products/{product_id}/files", files={"file": (
            "creator-workbook.txt", b"The Creator Workbook\n\n1. Who is it for?\n2. What do they get?\n", "text/plain")},
        ).raise_for_status()
    return product_id


def _fulfilled(suite: Suite, name: str, description: str, kind: str, details: dict[str, str]) -> str:
    """A product the seller fulfils (a booking, a registration): Postsale records and tells."""
    return suite.create_product(name, description=description, delivery_type="none",
                                fulfilment={"kind": kind, "details": details})


STAFF_EMAIL = "owner@example.com"


def seed_staff_login(suite: Suite, state: dict) -> dict[str, str]:
    """The back office's owner, made once with a password of its own (the caller keeps `state` in
    `devrun.json`, so later runs print the same login)."""
    login = state.setdefault("staff_login", {"email": STAFF_EMAIL, "password": secrets.token_urlsafe(12)})
    with suite.admin("accounts") as accounts:
        made = accounts.post("/admin/staff", json={**login, "name": "Store owner", "role": "owner"})
        if made.status_code != 409:  # 409: made by an earlier run
            made.raise_for_status()
    return login


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
            extra_env={"NOTIFICATIONS_DEV_MAILBOX_DIR": str(DATA / "mailbox"),
                       "ENTITLEMENTS_STORAGE_DIR": str(DATA / "entitlements-files")},
        )
        suite.start()
        offers = seed_demo_store(suite, state)
        staff = seed_staff_login(suite, state)
        save_state(state)
        print(f"""
Postsale is running ({time.monotonic() - started:.0f}s to start). Open:

  Checkout (demo offer):  {offers['one_time']}
      one-time, with an order bump and two upsells; the code {DEMO_COUPON} takes 20 % off
  Subscription:           {offers['subscription']}
      monthly, after a 14-day free trial
  Payment plan:           {offers['payment_plan']}
      three monthly payments
  Pay with the test card 4242 4242 4242 4242 (4000 0000 0000 0002 is declined; Stripe's other
  test cards work as Stripe documents them). No money moves: this is the sandbox.

  Library:                {suite.url('entitlements')}/library
  Back office:            {suite.url('accounts')}/admin/login
      staff login {staff['email']} with the password {staff['password']} (the store's owner)
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
