"""Settings every service shares. Each service adds its own, under its own prefix."""

from __future__ import annotations

import functools
import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_LEGAL_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
S = TypeVar("S", bound=BaseSettings)


def from_environment(settings: type[S]) -> S:
    """`settings()`, built once for each state of the environment instead of at every use: for what
    a handler reads per event or per email (the public addresses, the seller's addresses). Building
    a settings object reads and validates the whole environment, which cost a consumer a twentieth
    of its CPU when done for each event; a changed environment (a test's) is read again.
    Read-only: the object is shared."""
    # The environment's raw bytes, as CPython keeps them (`os.environ._data`): hashing them is ten
    # times cheaper than decoding every name and value through `os.environ.items()`.
    raw = getattr(os.environ, "_data", None)
    return _built(settings, frozenset((raw if isinstance(raw, dict) else os.environ).items()))


@functools.lru_cache(maxsize=64)
def _built(settings: type[S], _environment: frozenset) -> S:
    return settings()


class KafkaSettings(BaseSettings):
    """How every Kafka client of a service connects, and how its names are laid out on the cluster.

    The one place that turns the environment into client arguments: the faststream broker (its
    producer and consumers), the outbox relay's producer, the admin client that creates topics,
    the consumer-lag monitor and the dead-letter command all take `client_kwargs()` (or, for
    faststream, `faststream_security()`, which faststream turns into the same arguments).

    The connection settings are `KAFKA_*`, as other Kafka tools name them; Postsale's own layout
    on the cluster is `POSTSALE_KAFKA_*`: a prefix for its topics and consumer groups, so two
    installations can share one cluster, and whether it creates its topics itself.
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_", populate_by_name=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None  # PEM bundle of the CAs that sign the brokers' certificates; default: the system's
    ssl_certfile: Path | None = None  # PEM client certificate (chain), for brokers that require one (mTLS)
    ssl_keyfile: Path | None = None  # its PEM private key
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    prefix: str = Field("", validation_alias="POSTSALE_KAFKA_PREFIX")
    create_topics: bool = Field(True, validation_alias="POSTSALE_KAFKA_CREATE_TOPICS")
    # The partitions of each topic Postsale creates (None: the contract's, 3). A consumer group
    # reads a partition with one consumer at a time, so a service's replicas beyond this count
    # consume nothing (they still answer HTTP): the ceiling of scaling a service out.
    partitions: int | None = Field(None, ge=1, le=1000, validation_alias="POSTSALE_KAFKA_PARTITIONS")

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("prefix")
    @classmethod
    def _legal_prefix(cls, value: str) -> str:
        value = value.strip().rstrip(".")
        if not _LEGAL_NAME.match(value):
            raise ValueError("a Kafka prefix may hold only letters, digits, '.', '_' and '-'")
        if len(value) > 100:
            raise ValueError("a Kafka prefix of more than 100 characters leaves no room for the topic names")
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "partitions", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> "KafkaSettings":
        if self.uses_sasl and not (self.sasl_username and self.sasl_password and self.sasl_password.get_secret_value()):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_USERNAME "
                             "and KAFKA_SASL_PASSWORD")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate it belongs to)")
        if self.uses_ssl:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self, name)
                if path is not None and not path.is_file():
                    raise ValueError(f"KAFKA_{name.upper()}: no file at {path}")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    # -- names on the cluster -------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """The Kafka topic of a contract topic (or dead-letter topic): `<prefix>.<name>`."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def group(self, group_id: str) -> str:
        """The Kafka consumer group of one of Postsale's groups: `<prefix>.<group id>`."""
        return f"{self.prefix}.{group_id}" if self.prefix else group_id

    # -- client arguments -----------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client, or None without TLS."""
        if not self.uses_ssl:
            return None
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(
            cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile,
            password=self.ssl_key_password.get_secret_value() if self.ssl_key_password else None)
        context.check_hostname = self.ssl_check_hostname
        return context

    def security_kwargs(self) -> dict[str, Any]:
        """aiokafka's security arguments (`security_protocol`, `ssl_context`, `sasl_*`)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol, "ssl_context": self.ssl_context()}
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked by _consistent
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.get_secret_value())
        return kwargs

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for any aiokafka client (producer, consumer, admin): servers and security."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security_kwargs()}

    def faststream_security(self):
        """The same security as faststream's `KafkaBroker(security=...)` takes it (None: plaintext)."""
        from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

        context = self.ssl_context()
        if not self.uses_sasl:
            return BaseSecurity(ssl_context=context) if context is not None else None
        assert self.sasl_username is not None and self.sasl_password is not None
        kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
        kind = kinds[self.sasl_mechanism]
        return kind(self.sasl_username, self.sasl_password.get_secret_value(), ssl_context=context,
                    use_ssl=self.uses_ssl)


def kafka_settings(kafka: "KafkaSettings | str | None" = None) -> KafkaSettings:
    """`kafka` as settings: given ones, or bootstrap servers with the rest from the environment,
    or (None) all from the environment."""
    if isinstance(kafka, KafkaSettings):
        return kafka
    if kafka is None:
        return KafkaSettings()
    return KafkaSettings(bootstrap_servers=kafka)


class DatabasePoolSettings(BaseSettings):
    """The connection pool of a service's PostgreSQL database (SQLite needs none). One process
    holds at most `pool_size + max_overflow` connections, and `pool_size` more for the reads its
    handlers make from the event loop (`LoopReads`: entitlements' `/api/library`, opened when
    first used): size PostgreSQL's `max_connections` for that times the replicas of every
    service, plus the migration jobs."""

    model_config = SettingsConfigDict(env_prefix="POSTSALE_DATABASE_")

    pool_size: int = Field(10, ge=1)  # connections kept open
    max_overflow: int = Field(10, ge=0)  # opened beyond them at a peak, closed once returned
    pool_timeout: float = Field(30.0, gt=0)  # seconds a request waits for a connection before failing
    pool_recycle: int = -1  # seconds after which a connection is replaced (-1: never), for proxies that cut idle ones
    # Seconds a connection may rest in the pool before it is pinged on its next use (0: before every use).
    pool_ping_after_idle: float = Field(1.0, ge=0)


class PublicUrls(BaseSettings):
    """Where a browser reaches each service; pages link and redirect across services."""

    model_config = SettingsConfigDict(env_prefix="POSTSALE_")

    checkout_url: str = "http://127.0.0.1:8001"
    entitlements_url: str = "http://127.0.0.1:8002"
    accounts_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"

    @property
    def library_url(self) -> str:
        return f"{self.entitlements_url}/library"

    def login_url(self, next_url: str | None = None) -> str:
        from urllib.parse import urlencode

        query = f"?{urlencode({'next': next_url})}" if next_url else ""
        return f"{self.accounts_url}/login{query}"


def secret_field(description: str):
    """A secret has no default: a service refuses to start without it."""
    return Field(min_length=16, description=description)
