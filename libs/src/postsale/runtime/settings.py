"""Settings every service shares. Each service adds its own, under its own prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"


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
