from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "entitlements"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DeliverySettings(BaseSettings):
    """How products are delivered: what the use cases and the delivery strategies read. No secret
    here, so a consumer, the scheduler or the reconciliation command can read it anywhere."""

    model_config = SettingsConfigDict(env_prefix="ENTITLEMENTS_")

    storage_dir: Path = Field(default=Path(".data/entitlements-files"),
                              description="The folder uploaded files are kept in (the local storage adapter).")
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="The largest file a seller may upload.")
    download_link_minutes: int = Field(default=24 * 60, ge=1,
                                       description="How long the link in the delivery email works.")
    library_link_minutes: int = Field(default=10, ge=1,
                                      description="How long the link made by a click in the library works.")
    license_requests_per_key: int = Field(default=60, ge=1,
                                          description="License API requests a minute per key (per process).")
    license_requests_per_address: int = Field(default=120, ge=1,
                                              description="License API requests a minute per client address.")
    integration_timeout_seconds: float = Field(default=15.0, gt=0,
                                               description="How long a third-party endpoint has to answer.")
    integration_private_targets: bool | None = Field(
        default=None, description="true: a third-party endpoint may be on this machine or a private network (and "
                                  "plain http to this machine), for development and the tests; otherwise refused.")
    reconcile_interval_hours: float = Field(default=24.0, gt=0, description="How often reconciliation runs.")
    reconcile_repair: bool = Field(default=False, description="Whether the scheduled reconciliation repairs.")


class Settings(DeliverySettings):
    database_url: str = "sqlite:///.data/entitlements.db"
    admin_token: str = secret_field("Bearer token of the admin API.")
