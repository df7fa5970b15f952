"""`make run`: the demo store is served, Ctrl-C stops what it started, the next run keeps the data."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from postsale_local.processes import port_answers
from tests.support import form_field

pytestmark = pytest.mark.e2e


def four_free_ports() -> int:
    # Below the kernel's ephemeral range (32768 and up here): there, an outgoing connection may take
    # a service's port while `make run` restarts, and the second run could not bind it.
    while True:
        first = random.randrange(20000, 32000)
        if not any(port_answers(first + offset) for offset in range(4)):
            return first


def run_until_ready(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Starts the dev runner as `make run` does; returns it and what it printed up to its URLs."""
    runner = subprocess.Popen([sys.executable, "-m", "postsale_local.devrun"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in runner.stdout], daemon=True).start()
    printed = ""
    while "Press Ctrl-C" not in printed:
        try:
            printed += lines.get(timeout=180)
        except queue.Empty:
            runner.kill()
            raise AssertionError(f"make run printed no URLs within 3 minutes:\n{printed}") from None
        if runner.poll() is not None and lines.empty():
            raise AssertionError(f"make run exited with {runner.returncode}:\n{printed}")
    return runner, printed


def test_make_run_serves_the_demo_store_and_keeps_it_across_runs(tmp_path):
    first_port = four_free_ports()
    env = {**os.environ, "POSTSALE_DATA_DIR": str(tmp_path / ".data"), "POSTSALE_DEV_PORT": str(first_port)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # its own broker, whose data must survive the restart
    offers = []
    for _ in range(2):
        runner, printed = run_until_ready(env)
        try:
            checkout_url = re.search(r"Checkout \(demo offer\):\s+(\S+)", printed).group(1)
            subscription_url = re.search(r"Subscription:\s+(\S+)", printed).group(1)
            plan_url = re.search(r"Payment plan:\s+(\S+)", printed).group(1)
            library_url = re.search(r"Library:\s+(\S+)", printed).group(1)
            mailbox_url = re.search(r"Mailbox:\s+(\S+)", printed).group(1)
            offer_page = httpx.get(checkout_url)
            assert offer_page.status_code == 200
            assert "Creator Membership: lifetime access" in offer_page.text
            assert "19.00 EUR a month after a 14-day free trial" in httpx.get(subscription_url).text
            assert "3 payments of 99.00 EUR a month" in httpx.get(plan_url).text
            assert httpx.get(library_url).headers["location"].startswith(f"http://127.0.0.1:{first_port + 2}/login")
            assert httpx.get(mailbox_url).status_code == 200
            back_office = re.search(r"Back office:\s+(\S+)\s+staff login (\S+) with the password (\S+)", printed)
            staff = httpx.Client(timeout=10)
            login_page = staff.get(back_office.group(1))
            signed_in = staff.post(back_office.group(1), data={
                "email": back_office.group(2), "password": back_office.group(3),
                "csrf_token": form_field(login_page.text, "csrf_token")}, follow_redirects=True)
            assert signed_in.status_code == 200 and "Customers" in signed_in.text, "the printed staff login fails"
            # Each demo product is delivered as it would be in a store: lessons, a file, a booking.
            products = staff.get(f"http://127.0.0.1:{first_port + 1}/admin/products").text
            listed = " ".join(re.sub(r"<[^>]+>", " ", products[products.index("<main"):]).split())
            for product, delivery in (("The Creator Membership", "Hosted membership"),
                                      ("The Creator Workbook", "Download"), ("Coaching call", "A booking"),
                                      ("Launch Masterclass", "A registration")):
                assert f"{product} {delivery}" in listed, listed
            offers.append((checkout_url, subscription_url, plan_url))
        finally:
            runner.send_signal(signal.SIGINT)  # what Ctrl-C sends
            assert runner.wait(timeout=90) == 0
        assert not any(port_answers(first_port + offset) for offset in range(4)), "a service outlived Ctrl-C"
        kafka_ports = json.loads((tmp_path / ".data" / "kafka" / "cluster.json").read_text())["broker_ports"]
        assert not any(port_answers(port) for port in kafka_ports), "Kafka outlived Ctrl-C"
    assert offers[0] == offers[1], "the second run made a new demo store instead of keeping the first"
