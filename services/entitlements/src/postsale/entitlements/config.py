from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "entitlements"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENTITLEMENTS_")

    database_url: str = "sqlite:///.data/entitlements.db"
    admin_token: str = secret_field("Bearer token of the admin API.")
