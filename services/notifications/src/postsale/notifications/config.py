import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "notifications"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def seller_addresses(value: object) -> tuple[str, ...]:
    """`NOTIFICATIONS_SELLER_EMAILS`: addresses separated by commas, each once; empty: none.
    Raises ValueError naming the first address that is not one."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    addresses: list[str] = []
    for part in (str(p).strip() for p in parts):
        if not part:
            continue
        if not _ADDRESS.fullmatch(part):
            raise ValueError(f"NOTIFICATIONS_SELLER_EMAILS: {part!r} is not an email address (give plain addresses "
                             "separated by commas, e.g. sales@example.com,owner@example.com; leave it empty for "
                             "no seller emails)")
        if part.lower() not in (a.lower() for a in addresses):
            addresses.append(part)
    return tuple(addresses)


SellerEmails = Annotated[tuple[str, ...], NoDecode, BeforeValidator(seller_addresses)]


class SellerNotifications(BaseSettings):
    """Who hears of each sale and each failed payment. Read where an email is queued; `Settings`
    checks the same variable when the service starts, so a bad address never gets that far."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    seller_emails: SellerEmails = ()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    database_url: str = "sqlite:///.data/notifications.db"
    admin_token: str = secret_field("Bearer token of the admin API.")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    from_address: str = "Postsale <no-reply@postsale.localhost>"
    # When set, /mailbox shows the emails the development mailbox received into this folder.
    dev_mailbox_dir: str | None = None
    max_send_attempts: int = Field(default=8, ge=1)
    # The seller's notification of each sale and of each failed payment go to these; none: not sent.
    seller_emails: SellerEmails = ()


class WebhookSettings(BaseSettings):
    """Outgoing webhooks to the seller's endpoints (docs/webhooks.md)."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_WEBHOOK_")

    # Private and loopback targets are refused unless this is true (`make run` and the tests set it).
    private_targets: bool | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)  # the whole attempt: connect, send, read the answer
    concurrency: int = Field(default=4, ge=1, le=32)  # attempts at once, per process
    per_endpoint_concurrency: int = Field(default=2, ge=1, le=32)  # so one slow endpoint leaves the others room
    disable_after_days: float = Field(default=5.0, gt=0)  # an endpoint failing this long is disabled
    retention_days: float = Field(default=30.0, gt=0, le=3650)  # delivered deliveries are kept this long
