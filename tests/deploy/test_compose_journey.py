"""Where a Docker engine answers: the four images built from services/*/Dockerfile, the suite
started by deploy/compose.yaml (`up --build --wait`, so every container is healthy, the
services ready), and a customer's journey through it: a product and an offer made through the
admin APIs, the sandbox payment, the account set up, the library, the email in Mailpit.

It needs a Docker engine, which this project's machines do not have (their `docker` is only the
client), so it is not part of `make test`: it carries the `docker` marker, which pytest.ini leaves
out by default, and runs with `make test-docker`, where a missing engine FAILS it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import httpx
import pytest
from dotenv import dotenv_values

from postsale_local.processes import free_port
from postsale_local.suite import Suite
from tests.deploy.conftest import DEPLOY, SERVICES
from tests.support import eventually, follow_page

pytestmark = pytest.mark.docker

PORTS = ("CHECKOUT_PORT", "ENTITLEMENTS_PORT", "ACCOUNTS_PORT", "NOTIFICATIONS_PORT", "MAILPIT_PORT", "KAFKA_HOST_PORT")


def docker_engine_problem() -> str | None:
    """None when `docker info` answers; else what it said."""
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=20, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return "no docker command"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20s"
    if result.returncode != 0:
        return " ".join((result.stderr or result.stdout).split())[:300]
    return None


@pytest.fixture
def compose_project(tmp_path):
    problem = docker_engine_problem()
    if problem:
        pytest.fail(f"no Docker engine answers ({problem}): `make test-docker` needs one")
    env_file = tmp_path / "compose.env"
    written = subprocess.run([sys.executable, DEPLOY / "compose" / "write-env.py", "--output", env_file],
                             capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    ports = {name: free_port() for name in PORTS}
    urls = {f"POSTSALE_{s.upper()}_URL": f"http://127.0.0.1:{ports[f'{s.upper()}_PORT']}" for s in SERVICES}
    with env_file.open("a") as out:
        out.writelines(f"{name}={value}\n" for name, value in {**ports, **urls}.items())
    compose = ["docker", "compose", "--file", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file),
               "--project-name", f"postsale-test-{uuid.uuid4().hex[:8]}"]
    up = subprocess.run([*compose, "up", "--build", "--detach", "--wait", "--wait-timeout", "600"],
                        capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    try:
        assert up.returncode == 0, f"compose up failed:\n{up.stdout[-4000:]}{up.stderr[-4000:]}"
        yield {key: value or "" for key, value in dotenv_values(env_file, interpolate=False).items()}
    finally:
        logs = subprocess.run([*compose, "logs", "--no-color", "--tail", "200"], capture_output=True, text=True)
        (tmp_path / "compose.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], capture_output=True, timeout=300)


def test_a_customer_buys_through_the_compose_deployment(compose_project, tmp_path):
    env = compose_project
    ports = {service: int(env[f"{service.upper()}_PORT"]) for service in SERVICES}
    admin = Suite(kafka_bootstrap_servers="", ports=ports, database_urls={}, smtp_port=0, log_dir=tmp_path,
                  secrets={f"{s.upper()}_ADMIN_TOKEN": env[f"{s.upper()}_ADMIN_TOKEN"] for s in SERVICES})
    name = f"Compose membership {uuid.uuid4().hex[:6]}"
    store = admin.create_store(name, f"{name} offer")
    email = f"ann-{uuid.uuid4().hex[:8]}@example.com"

    with httpx.Client(timeout=10) as browser:
        started = browser.post(f"{admin.url('checkout')}/offers/{store.offer_id}/checkout", data={"email": email})
        assert started.status_code == 303, started.text
        paid = browser.post(f"{admin.url('checkout')}{started.headers['location']}/pay",
                            data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303, paid.text
        setup_page = follow_page(browser, browser.get(paid.headers["location"]), timeout=60)
        token = re.search(r'name="token" value="([^"]+)"', setup_page.text).group(1)
        created = browser.post(f"{admin.url('accounts')}/setup", data={
            "token": token, "first_name": "Ann", "last_name": "Lee",
            "password": "correct horse battery", "password_repeat": "correct horse battery"})
        assert created.status_code == 303, created.text
        eventually(lambda: name in browser.get(f"{admin.url('entitlements')}/library").text, timeout=60)

    def confirmation():
        messages = httpx.get(f"http://127.0.0.1:{env['MAILPIT_PORT']}/api/v1/messages", timeout=5).json()["messages"]
        return [m for m in messages if any(to["Address"] == email for to in m["To"])
                and m["Subject"].startswith("Your purchase")]

    eventually(confirmation, timeout=60)
