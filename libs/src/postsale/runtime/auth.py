"""Customer sessions that every service can verify, and that end everywhere when they end.

Accounts signs a JWT (EdDSA) into the `postsale_session` cookie and publishes its public keys as a
JWKS; the other services verify the cookie against those keys, fetched once and refreshed when an
unknown key id appears. A session that ends before its token expires (logout, a password or email
change) is announced as `SessionEnded` on `accounts.customers.v1`; every service process reads that
topic into a `RevokedSessions` set (`postsale.runtime.accounts_feed`, started by
`create_service_app`) and refuses the token from then on, within about a second.

A token that verified is remembered (`VerifiedTokens`) for a few minutes at most, never past its
`exp`, so a customer's next requests skip the signature check; whether its session has ended is
still asked on every request.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import jwt
from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
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


class VerifiedTokens:
    """Session tokens whose signature and claims verified, by the token's exact text, each until
    its `exp` but at most `ttl` seconds (so a key withdrawn from the JWKS stops being honoured
    within minutes, as the key cache's own refresh would). A bounded LRU: past `size` tokens the
    least recently used is forgotten and verified again when it comes back. Only successes are
    kept, so forged tokens cannot fill it. Thread-safe.

    Why: checking an EdDSA signature and the claims costs more than the rest of a small request;
    a customer sends the same cookie with every request."""

    def __init__(self, size: int = 4096, ttl: float = 300.0, clock=time.time) -> None:
        self.size, self.ttl, self._clock = size, ttl, clock
        self._tokens: OrderedDict[str, tuple[CustomerSession, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> CustomerSession | None:
        with self._lock:
            found = self._tokens.get(token)
            if found is None:
                return None
            if self._clock() >= found[1]:  # PyJWT refuses a token at its `exp`: so do we
                del self._tokens[token]
                return None
            self._tokens.move_to_end(token)
            return found[0]

    def put(self, token: str, session: CustomerSession, expires_at: float) -> None:
        with self._lock:
            self._tokens[token] = (session, min(expires_at, self._clock() + self.ttl))
            self._tokens.move_to_end(token)
            while len(self._tokens) > self.size:
                self._tokens.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tokens)


class SessionVerifier:
    def __init__(self, jwks_url: str, revoked: RevokedSessions | None = None,
                 verified: VerifiedTokens | None = None) -> None:
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)
        self.revoked = revoked
        self.verified = verified if verified is not None else VerifiedTokens()

    def verify(self, token: str | None) -> CustomerSession | None:
        """The session in `token`, or None when it is missing, expired, forged, unverifiable or ended."""
        if not token:
            return None
        session = self.verified.get(token)
        if session is None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token)
                claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
            except jwt.PyJWTError:
                return None
            session = CustomerSession(customer_id=claims["sub"], email=claims["email"], session_id=claims["sid"])
            self.verified.put(token, session, float(claims.get("exp", 0)))  # no `exp`: not kept
        return None if self._ended(session) else session

    def verify_known(self, token: str | None) -> tuple[bool, CustomerSession | None]:
        """(True, the answer of `verify`) when it needs no key: no token, or one verified lately;
        (False, None) otherwise. Does no I/O, so the event loop may call it."""
        if not token:
            return True, None
        session = self.verified.get(token)
        if session is None:
            return False, None
        return True, None if self._ended(session) else session

    def _ended(self, session: CustomerSession) -> bool:
        return self.revoked is not None and self.revoked.is_ended(session.session_id)


def customer_of(request: Request) -> CustomerSession | None:
    """The logged-in customer of a request, verified against accounts' published keys; None for a
    session that ended (logged out), even if its token has not expired. For code that runs in the
    thread pool (a handler); a route takes `Depends(current_customer)` instead."""
    verifier: SessionVerifier = request.app.state.session_verifier
    return verifier.verify(request.cookies.get(SESSION_COOKIE))


async def current_customer(request: Request) -> CustomerSession | None:
    """As `customer_of`, as a dependency. Async, so that a token verified lately is answered in the
    event loop, without a hop to the thread pool (which costs more than the look-up); any other is
    verified in the pool, since its key may have to be fetched from accounts."""
    verifier: SessionVerifier = request.app.state.session_verifier
    token = request.cookies.get(SESSION_COOKIE)
    verify_known = getattr(verifier, "verify_known", None)
    if verify_known is not None:
        answered, session = verify_known(token)
        if answered:
            return session
    return await run_in_threadpool(verifier.verify, token)


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
