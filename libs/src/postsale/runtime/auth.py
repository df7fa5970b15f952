"""Customer sessions that every service can verify, and that end everywhere when they end.

Accounts signs a JWT (EdDSA) into the `postsale_session` cookie and publishes its public keys as a
JWKS; the other services verify the cookie against those keys, fetched once and refreshed when an
unknown key id appears. A session that ends before its token expires (logout, a password or email
change) is announced as `SessionEnded` on `accounts.customers.v1`; every service process reads that
topic into a `RevokedSessions` set (`postsale.runtime.accounts_feed`, started by
`create_service_app`) and refuses the token from then on, within about a second.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import jwt
from fastapi import Request, Response
from jwt import PyJWKClient
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.runtime.clock import as_utc, utcnow

SESSION_COOKIE = "postsale_session"
ISSUER = "postsale-accounts"
AUDIENCE = "postsale"


@dataclass(frozen=True)
class CustomerSession:
    customer_id: str
    email: str
    session_id: str


class RevokedSessions:
    """Ids of sessions that ended before their tokens expire, each kept until its token expires.
    Thread-safe: filled by the feed's task, read by request handlers in the thread pool."""

    def __init__(self) -> None:
        self._ended: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def add(self, session_id: str, expires_at: datetime) -> None:
        with self._lock:
            self._ended[session_id] = as_utc(expires_at)

    def is_ended(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._ended

    def prune(self, now: datetime | None = None) -> None:
        """Forgets sessions whose tokens have expired: those are refused by their `exp` anyway."""
        now = now or utcnow()
        with self._lock:
            for session_id in [s for s, expires in self._ended.items() if expires < now]:
                del self._ended[session_id]

    def __len__(self) -> int:
        return len(self._ended)


class SessionVerifier:
    def __init__(self, jwks_url: str, revoked: RevokedSessions | None = None) -> None:
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)
        self.revoked = revoked

    def verify(self, token: str | None) -> CustomerSession | None:
        """The session in `token`, or None when it is missing, expired, forged, unverifiable or ended."""
        if not token:
            return None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
        except jwt.PyJWTError:
            return None
        if self.revoked is not None and self.revoked.is_ended(claims["sid"]):
            return None
        return CustomerSession(customer_id=claims["sub"], email=claims["email"], session_id=claims["sid"])


def current_customer(request: Request) -> CustomerSession | None:
    """The logged-in customer of a request, verified against accounts' published keys; None for a
    session that ended (logged out), even if its token has not expired."""
    verifier: SessionVerifier = request.app.state.session_verifier
    return verifier.verify(request.cookies.get(SESSION_COOKIE))


class CookieSettings(BaseSettings):
    """How the login cookie is set; shared by every service (the CSRF cookie follows the same rules)."""

    model_config = SettingsConfigDict(env_prefix="POSTSALE_")

    # The parent domain (e.g. `shop.example.com`) when the services are on sibling hosts
    # (`login.shop.example.com`, `library.shop.example.com`); unset: the host that set it only.
    cookie_domain: str | None = None
    # Unset: `Secure` unless accounts is reached over plain http on this machine (local development).
    cookie_secure: bool | None = None


def _local_development(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and is_loopback_name(parts.hostname or "")


def is_loopback_name(host: str) -> bool:
    """`localhost`, a name under `.localhost`, or a loopback address: this machine."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_attributes(accounts_url: str, settings: CookieSettings | None = None) -> dict:
    """`secure`, `domain`, `httponly`, `samesite` and `path` of Postsale's cookies."""
    settings = settings or CookieSettings()
    secure = settings.cookie_secure if settings.cookie_secure is not None else not _local_development(accounts_url)
    return {"secure": secure, "domain": settings.cookie_domain or None, "httponly": True, "samesite": "lax",
            "path": "/"}


def set_session_cookie(response: Response, token: str, *, max_age: int, accounts_url: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, **cookie_attributes(accounts_url))


def clear_session_cookie(response: Response, *, accounts_url: str) -> None:
    attributes = cookie_attributes(accounts_url)
    response.delete_cookie(SESSION_COOKIE, path=attributes["path"], domain=attributes["domain"],
                           secure=attributes["secure"], httponly=True, samesite="lax")
