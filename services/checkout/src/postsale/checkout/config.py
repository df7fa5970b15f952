from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.settings import secret_field

SERVICE = "checkout"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

    database_url: str = "sqlite:///.data/checkout.db"
    admin_token: str = secret_field("Bearer token of the admin API.")
    secret_key: str = secret_field("Derives the account setup token handed to each buyer's browser.")
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    stripe_api_key: str | None = None
    stripe_publishable_key: str | None = None  # pk_...: Stripe.js on the payment page
    stripe_api_base: str | None = None  # stripe-mock in tests; Stripe's own API when unset
    stripe_webhook_secret: str | None = None

    @model_validator(mode="after")
    def stripe_needs_its_keys(self) -> "Settings":
        if self.payment_provider == "stripe" and not (
                self.stripe_api_key and self.stripe_webhook_secret and self.stripe_publishable_key):
            raise ValueError("CHECKOUT_PAYMENT_PROVIDER=stripe needs CHECKOUT_STRIPE_API_KEY and "
                             "CHECKOUT_STRIPE_WEBHOOK_SECRET, and CHECKOUT_STRIPE_PUBLISHABLE_KEY for the "
                             "payment page's card form")
        return self
