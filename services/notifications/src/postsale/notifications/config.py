from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "notifications"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


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
