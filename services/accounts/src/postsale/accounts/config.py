from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "accounts"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_")

    database_url: str = "sqlite:///.data/accounts.db"
    admin_token: str = secret_field("Bearer token of the admin API.")
    session_signing_key: str = secret_field("Ed25519 private key (PEM) that signs session tokens.")
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
