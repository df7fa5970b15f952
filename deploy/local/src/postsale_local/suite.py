"""The four Postsale services as real processes, configured by environment.

Used by `make run` (SQLite files, the development mailbox) and by the end-to-end tests
(PostgreSQL or SQLite, a test SMTP server, stripe-mock).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from postsale_local.processes import ComponentUnavailable, start_process, stop_process, tail

SERVICES = ("checkout", "entitlements", "accounts", "notifications")


def generate_secrets() -> dict[str, str]:
    """Fresh secrets for every service (a secret never has a default)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signing_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        **{f"{service.upper()}_ADMIN_TOKEN": secrets.token_urlsafe(24) for service in SERVICES},
        "CHECKOUT_SECRET_KEY": secrets.token_urlsafe(32),
        "ACCOUNTS_SESSION_SIGNING_KEY": signing_key,
    }


@dataclass(frozen=True)
class Store:
    product_id: str
    product_name: str
    offer_id: str
    checkout_url: str


@dataclass
class Suite:
    kafka_bootstrap_servers: str
    ports: dict[str, int]
    database_urls: dict[str, str]
    smtp_port: int
    log_dir: Path
    secrets: dict[str, str] = field(default_factory=generate_secrets)
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def admin_token(self, service: str) -> str:
        return self.secrets[f"{service.upper()}_ADMIN_TOKEN"]

    def environment(self) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(self.smtp_port),
            "NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS": "true",  # the sellers' endpoints run on this machine
            "ENTITLEMENTS_INTEGRATION_PRIVATE_TARGETS": "true",  # so do the third-party platforms' endpoints
            **{f"POSTSALE_{service.upper()}_URL": self.url(service) for service in SERVICES},
            **{f"{service.upper()}_DATABASE_URL": self.database_urls[service] for service in SERVICES},
            **self.secrets,
            **self.extra_env,
        }
        return env

    def admin(self, service: str) -> httpx.Client:
        """A client of the service's admin API."""
        return httpx.Client(base_url=self.url(service), timeout=10,
                            headers={"Authorization": f"Bearer {self.admin_token(service)}"})

    def create_product(self, name: str, *, description: str = "", delivery_type: str = "membership",
                       **settings) -> str:
        """A product through entitlements' admin API, with its delivery type's `settings` (e.g.
        `fulfilment={"kind": "booking"}`); returns its id."""
        with self.admin("entitlements") as entitlements:
            product = entitlements.post("/admin/products", json={
                "name": name, "description": description, "delivery_type": delivery_type, **settings})
            product.raise_for_status()
            return product.json()["id"]

    def create_offer(self, body: dict, *, timeout: float = 60) -> dict:
        """An offer through checkout's admin API, once its products have reached checkout's
        catalog (through Kafka); returns the offer as the API answers it."""
        with self.admin("checkout") as checkout:
            deadline = time.monotonic() + timeout
            while True:
                offer = checkout.post("/admin/offers", json=body)
                if offer.status_code != 422 or "unknown product" not in offer.text or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        if offer.status_code != 201:
            raise RuntimeError(f"checkout refused the offer {body.get('name')!r}: {offer.text}")
        return offer.json()

    def create_store(self, product_name: str, offer_name: str, *, amount: int = 4900, currency: str = "EUR",
                     description: str = "", **offer) -> Store:
        """A membership product in an offer, through the admin APIs as a seller would make them."""
        product_id = self.create_product(product_name, description=description)
        created = self.create_offer({"name": offer_name, "product_ids": [product_id],
                                     "price": {"amount": amount, "currency": currency}, **offer})
        return Store(product_id, product_name, created["id"], created["checkout_url"])

    def start(self, timeout: float = 120) -> None:
        for service in SERVICES:
            self._launch(service)
        deadline = time.monotonic() + timeout
        for service in SERVICES:
            self._wait_ready(service, deadline)

    def _launch(self, service: str) -> None:
        self.processes[service] = start_process(
            [sys.executable, "-m", "uvicorn", "--factory", f"postsale.{service}.entrypoints.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.ports[service]), "--no-access-log"],
            log=self.log_path(service), env=self.environment(),
        )

    def kill(self, service: str) -> None:
        """SIGKILL one service (its process group), as a crash or an OOM kill would: no shutdown
        code runs, open transactions are cut and unsent work stays where it was. For fault tests."""
        process = self.processes.pop(service)
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)

    def start_service(self, service: str, *, wait: bool = True, timeout: float = 90) -> None:
        """Start one service again (after `kill`) on its port and database; returns once ready,
        or at once with `wait=False` (then `wait_ready`)."""
        self._launch(service)
        if wait:
            self.wait_ready(service, timeout)

    def wait_ready(self, service: str, timeout: float = 90) -> None:
        self._wait_ready(service, time.monotonic() + timeout)

    def log_path(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def _wait_ready(self, service: str, deadline: float) -> None:
        process = self.processes[service]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ComponentUnavailable(
                    f"{service} exited with {process.returncode}; its log:\n{tail(self.log_path(service))}")
            try:
                with urllib.request.urlopen(f"{self.url(service)}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ComponentUnavailable(f"{service} was not ready in time; its log:\n{tail(self.log_path(service))}")

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)
        self.processes.clear()

    def __enter__(self) -> "Suite":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
