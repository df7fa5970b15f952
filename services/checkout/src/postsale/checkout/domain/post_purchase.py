"""Where a buyer goes after paying, per the offer's (or the cart's) post-purchase settings.

The settings concern new customers only: a customer who can already log in goes to the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Destination = Literal["library", "thank_you", "landing_page"]
MAX_URL_LENGTH = 2000


@dataclass(frozen=True)
class PostPurchase:
    require_password: bool = False
    skip_account_page: bool = False
    send_welcome_email: bool = True
    destination: Destination = "library"
    landing_page_url: str | None = None

    @property
    def asks_password_at_checkout(self) -> bool:
        return self.require_password  # the password wins over skipping the account page

    @property
    def skips_account_page(self) -> bool:
        return self.skip_account_page and not self.require_password


def settings_problem(settings: PostPurchase) -> str | None:
    if settings.destination == "landing_page":
        url = settings.landing_page_url or ""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc or len(url) > MAX_URL_LENGTH:
            return f"The landing page needs an http(s) URL of at most {MAX_URL_LENGTH} characters."
    elif settings.landing_page_url:
        return "A landing page URL needs the destination `landing_page`."
    if settings.skip_account_page and settings.destination != "landing_page":
        return "The account creation page can only be skipped when the buyer goes on to a landing page."
    return None


NextStep = Literal["library", "account_page", "password_set", "destination"]


def next_step(settings: PostPurchase, *, has_account: bool, bought_before: bool) -> NextStep:
    """What follows the purchase (and its upsells).

    - `library`: a customer who can log in;
    - `password_set`: the password was chosen on the payment page, accounts signs the buyer in;
    - `destination`: the account page is skipped (a welcome email carries the setup link);
    - `account_page`: otherwise. An email that bought before but never set up an account
      always goes there: accounts asks it to prove the email first.
    """
    if has_account:
        return "library"
    if bought_before:
        return "account_page"
    if settings.asks_password_at_checkout:
        return "password_set"
    if settings.skips_account_page:
        return "destination"
    return "account_page"
