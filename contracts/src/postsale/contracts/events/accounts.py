"""Accounts' events: customers, sessions and the theme, and the restricted account links."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from postsale.contracts import topics
from postsale.contracts.base import Event, secret


# --- accounts.customers.v1 ------------------------------------------------------------------


class CustomerRegistered(Event):
    """Accounts knows a new customer: after a first purchase, or added by the seller."""

    event_type: ClassVar[str] = "postsale.customer.registered"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    source: Literal["purchase", "seller"] = "purchase"
    registered_at: AwareDatetime
    offer_ids: list[str] = Field(
        default_factory=list, max_length=50,
        description="For a customer the seller added by hand: the offers the seller asked to grant, for checkout "
                    "to turn into purchases without payment. Empty otherwise.")


class AccountActivated(Event):
    """The customer set a password: the account can log in from now on."""

    event_type: ClassVar[str] = "postsale.account.activated"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    first_name: str
    last_name: str
    activated_at: AwareDatetime


class CustomerActivity(Event):
    """The customer did something the seller may want to see: logged in, opened the library,
    a lesson or a download. At most one per kind and product a minute."""

    event_type: ClassVar[str] = "postsale.customer.activity"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    kind: Literal["login", "library_visit", "lesson", "download"]
    product_id: str | None = None
    occurred_at: AwareDatetime


SessionEndReason = Literal["logout", "password_changed", "email_changed", "replaced", "seller"]


class SessionEnded(Event):
    """A login session ended before its token expired (logout, a password or email change, a new login
    in the same browser). Every service refuses the session's token from now on; a service keeps the
    id until `expires_at`, after which the token is refused anyway. Carries no secret: the session id
    alone signs no one in."""

    event_type: ClassVar[str] = "postsale.session.ended"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "session_id"

    customer_id: str
    session_id: str = Field(description="The `sid` claim of the session's tokens.")
    reason: SessionEndReason
    ended_at: AwareDatetime
    expires_at: AwareDatetime = Field(description="When the session's token would have expired anyway.")


class CustomerEmailChanged(Event):
    """The customer changed the login email, confirmed from the new address. Keyed by customer id:
    the customer id stays, only the address changes."""

    event_type: ClassVar[str] = "postsale.customer.email_changed"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    old_email: str
    new_email: str
    changed_at: AwareDatetime


class ThemeChanged(Event):
    """The seller's theme of the customer pages (account setup, login, library) changed; carries the
    whole theme. Colours are `#rrggbb`; an empty field means Postsale's default. Every service that
    renders customer pages applies the newest one (`postsale.runtime.theme` turns it into CSS)."""

    event_type: ClassVar[str] = "postsale.theme.changed"
    topic: ClassVar[str] = topics.CUSTOMERS.name
    subject_field: ClassVar[str] = "theme_id"
    key_field: ClassVar[str] = "theme_id"

    theme_id: str = Field(default="store", description="One theme per store: always `store`.")
    settings: dict[str, str | int | None] = Field(
        description="The theme's settings by name, as `PUT /admin/theme` of accounts takes them.")
    changed_at: AwareDatetime


# --- accounts.account-links.v1 (restricted) -------------------------------------------------


class _AccountLink(Event):
    topic: ClassVar[str] = topics.ACCOUNT_LINKS.name
    subject_field: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    expires_at: AwareDatetime


class AccountSetupLinkIssued(_AccountLink):
    """A link that lets a customer set up an account later: welcome email, resend, or a customer
    the seller added by hand."""

    event_type: ClassVar[str] = "postsale.account_setup_link.issued"
    url: str = secret("Single-use link to the account setup page.")
    reason: Literal["welcome", "resend", "added_by_seller"]
    issued_at: AwareDatetime


class LoginLinkIssued(_AccountLink):
    """The customer asked to log in by email: a link (whose page has the sign-in button, so mail
    scanners cannot use it up) and a one-time code as the alternative."""

    event_type: ClassVar[str] = "postsale.login_link.issued"
    url: str = secret("Single-use login link.")
    code: str = secret("One-time login code.")
    issued_at: AwareDatetime
    reason: Literal["customer", "seller"] = Field(
        default="customer", description="`seller`: the seller sent it for a customer who could not log in.")


class PasswordResetRequested(_AccountLink):
    """The customer asked to reset the password."""

    event_type: ClassVar[str] = "postsale.password_reset.requested"
    url: str = secret("Single-use link to the new-password page.")
    code: str = secret("One-time reset code.")
    requested_at: AwareDatetime


class EmailChangeRequested(_AccountLink):
    """A logged-in customer asked to change the login email: a link to confirm it, for the email sent
    to the new address (`new_email`); `email` is the current one, which may be told of the request."""

    event_type: ClassVar[str] = "postsale.email_change.requested"
    new_email: str
    url: str = secret("Single-use link that confirms the new address.")
    requested_at: AwareDatetime
