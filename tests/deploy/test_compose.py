"""deploy/compose.yaml, checked as `docker compose config` would without a Docker engine: the
variables interpolated from an env file made by deploy/compose/write-env.py, the result
validated against the Compose Specification's JSON Schema (the one compose-go, Compose's own
loader, embeds; pinned in postsale_local.deploy_tools), then what the schema cannot say: the
start order, each service's settings, and the PostgreSQL init script on a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

from postsale_local.deploy_tools import compose_schema
from postsale_local.postgres import PostgresCluster, ensure_postgres_installed
from tests.deploy.conftest import DEPLOY, SERVICES, settings_variables

pytestmark = pytest.mark.integration

COMPOSE = DEPLOY / "compose.yaml"
EXAMPLE = DEPLOY / "compose.env.example"
INFRASTRUCTURE = ("kafka", "postgres", "mailpit")


class InterpolationError(ValueError):
    pass


_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's interpolation of every string value: $NAME, ${NAME}, ${NAME:-default},
    ${NAME-default}, ${NAME:?error}, ${NAME?error}, and $$ for a dollar sign."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        expression = match.group("braced")
        name, operator, argument = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?(.*)", expression, re.S).groups()
        current = env.get(name)
        unset_or_empty = current is None or (operator or "").startswith(":") and current == ""
        if operator in (":-", "-"):
            return argument if unset_or_empty else current
        if operator in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(f"{name}: {argument}")
            return current
        return current or ""

    return _VARIABLE.sub(replace, value)


def load(env: dict[str, str]) -> dict:
    # PyYAML resolves the anchors and merge keys (<<) as compose-go does.
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "compose.env"
    result = subprocess.run([sys.executable, DEPLOY / "compose" / "write-env.py", "--output", path],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def env(env_file) -> dict[str, str]:
    # python-dotenv reads double-quoted values as compose-go does (\n becomes a line break).
    return {key: value or "" for key, value in dotenv_values(env_file, interpolate=False).items()}


@pytest.fixture(scope="module")
def project(env) -> dict:
    return load(env)


def test_the_file_is_valid_against_the_compose_specification(project):
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(project), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_would_catch_a_mistake(project):
    """The validation is not vacuous: a misspelt key and a wrong type are reported."""
    broken = {**project, "services": {**project["services"],
                                      "checkout": {**project["services"]["checkout"], "restrat": "always",
                                                   "healthcheck": "yes please"}}}
    messages = [e.message for e in jsonschema.Draft202012Validator(compose_schema()).iter_errors(broken)]
    assert any("restrat" in m for m in messages) and any("yes please" in m for m in messages), messages


def test_every_secret_comes_from_the_env_file_and_none_is_committed(env):
    example = dotenv_values(EXAMPLE, interpolate=False)
    secrets = [name for name in example if name.endswith(("_PASSWORD", "_TOKEN", "_KEY"))
               and not name.endswith("PUBLISHABLE_KEY")]
    assert secrets and all(not example[name] for name in secrets), "the example must hold no secret values"
    # Without a secret, Compose stops with the variable's name instead of starting a service.
    for name in ("CHECKOUT_ADMIN_TOKEN", "ACCOUNTS_SESSION_SIGNING_KEY", "POSTGRES_PASSWORD"):
        with pytest.raises(InterpolationError, match=name):
            load({**env, name: ""})
    # The made-up file fills every required one; the session key is a PEM across lines.
    assert env["ACCOUNTS_SESSION_SIGNING_KEY"].startswith("-----BEGIN PRIVATE KEY-----\n")


def test_start_order_is_gated_on_health(project):
    services = project["services"]
    assert set(services) == {*INFRASTRUCTURE, *SERVICES}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
        assert "healthcheck" in service, name
    for name in SERVICES:
        needed = {"kafka", "postgres"} | ({"mailpit"} if name == "notifications" else set())
        assert set(services[name]["depends_on"]) == needed, name
        # Healthy means ready to take traffic, so that `up --wait` returns with a working suite.
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_gets_the_settings_it_needs_and_no_misspelt_ones(service, project):
    definition = project["services"][service]
    environment = {k: str(v) for k, v in definition["environment"].items()}
    known, required = settings_variables(service)
    assert required <= set(environment), f"{service} cannot start without {sorted(required - set(environment))}"
    assert set(environment) <= known, f"{service} reads no {sorted(set(environment) - known)}"
    # Its own database, as its own role, on the Compose network's PostgreSQL.
    assert re.fullmatch(rf"postgresql\+psycopg://{service}:[\w-]+@postgres:5432/{service}",
                        environment[f"{service.upper()}_DATABASE_URL"])
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert {environment[f"POSTSALE_{s.upper()}_URL"] for s in SERVICES} == {
        f"http://localhost:{8001 + i}" for i in range(4)}
    assert definition["build"] == {"context": "..", "dockerfile": f"services/{service}/Dockerfile"}
    assert (COMPOSE.parent / definition["build"]["context"] / definition["build"]["dockerfile"]).exists()
    assert definition["read_only"] is True and definition["cap_drop"] == ["ALL"]


def test_the_postgres_init_script_makes_one_database_per_service(env):
    """The script PostgreSQL's image runs on first start, run here against a throwaway cluster of
    its own (it makes roles, which are global to a server)."""
    bin_dir = ensure_postgres_installed()
    with PostgresCluster() as server:
        passwords = {f"{s.upper()}_DB_PASSWORD": env[f"{s.upper()}_DB_PASSWORD"] for s in SERVICES}
        result = subprocess.run(["sh", DEPLOY / "compose" / "postgres-init.sh"], capture_output=True, text=True,
                                env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PGHOST": "127.0.0.1",
                                     "PGPORT": str(server.port), "POSTGRES_USER": "postgres", **passwords})
        assert result.returncode == 0, result.stdout + result.stderr
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres") as connection:
            owners = dict(connection.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
                [list(SERVICES)]).fetchall())
        assert owners == {service: service for service in SERVICES}
        for service in SERVICES:  # each role logs in to its own database
            with psycopg.connect(f"host=127.0.0.1 port={server.port} user={service} dbname={service} "
                                 f"password={env[f'{service.upper()}_DB_PASSWORD']}") as connection:
                connection.execute("CREATE TABLE proof (id int)")
        missing = subprocess.run(["sh", DEPLOY / "compose" / "postgres-init.sh"], capture_output=True, text=True,
                                 env={"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "PGPORT": str(server.port)})
        assert missing.returncode != 0 and "CHECKOUT_DB_PASSWORD is not set" in missing.stderr


def test_the_example_env_file_names_only_variables_the_compose_file_uses():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert set(dotenv_values(EXAMPLE, interpolate=False)) <= used



SECURED_CLUSTER = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.example.com:9093,kafka-1.example.com:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "postsale", "KAFKA_SASL_PASSWORD": "test-only-kafka-password",
    "KAFKA_SSL_CAFILE": "/etc/postsale/kafka-tls/ca.crt", "POSTSALE_KAFKA_PREFIX": "shop-eu",
    "POSTSALE_KAFKA_CREATE_TOPICS": "false", "POSTSALE_KAFKA_PARTITIONS": "12", "POSTSALE_DATABASE_POOL_SIZE": "20",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=test-only",
}


def read_as_the_service_does(environment: dict[str, str], monkeypatch, tls_dir: Path):
    """The Kafka, pool and trace settings a service makes of its Compose environment, with
    /etc/postsale/kafka-tls (the mounted folder) at `tls_dir`."""
    from postsale.runtime import tracing
    from postsale.runtime.settings import DatabasePoolSettings, KafkaSettings

    for name, value in environment.items():
        monkeypatch.setenv(name, value.replace("/etc/postsale/kafka-tls", str(tls_dir)))
    return KafkaSettings(), DatabasePoolSettings(), tracing.otlp_endpoint()


def test_kafka_security_prefix_pools_and_traces_reach_every_service(env, monkeypatch, tmp_path):
    import certifi

    (tmp_path / "ca.crt").write_bytes(Path(certifi.where()).read_bytes())  # a real CA bundle
    defaults, secured = load(env), load({**env, **SECURED_CLUSTER})
    for service in SERVICES:
        mounts = secured["services"][service]["volumes"]
        assert "./compose/kafka-tls:/etc/postsale/kafka-tls:ro" in mounts, "the TLS folder, read-only"
        with monkeypatch.context() as patched:
            kafka, pool, endpoint = read_as_the_service_does(
                {k: str(v) for k, v in secured["services"][service]["environment"].items()}, patched, tmp_path)
        assert (kafka.uses_sasl, kafka.uses_ssl, kafka.sasl_mechanism) == (True, True, "SCRAM-SHA-512")
        assert kafka.security_kwargs()["sasl_plain_password"] == "test-only-kafka-password"
        assert kafka.ssl_cafile == tmp_path / "ca.crt"
        assert (kafka.topic("checkout.purchases.v1"), kafka.group("postsale-checkout"), kafka.create_topics,
                kafka.partitions) == ("shop-eu.checkout.purchases.v1", "shop-eu.postsale-checkout", False, 12)
        assert (pool.pool_size, pool.max_overflow, endpoint) == (20, 10, "http://otel-collector:4318")

        # Left alone, the env file gives the bundled broker in plaintext, no prefix, nothing exported.
        with monkeypatch.context() as patched:
            kafka, pool, endpoint = read_as_the_service_does(
                {k: str(v) for k, v in defaults["services"][service]["environment"].items()}, patched, tmp_path)
        assert (kafka.bootstrap_servers, kafka.security_protocol, kafka.prefix, kafka.create_topics,
                kafka.partitions) == ("kafka:9092", "PLAINTEXT", "", True, None)
        assert (pool.pool_size, endpoint) == (10, None)
