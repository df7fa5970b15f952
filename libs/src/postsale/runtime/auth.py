"""Customer sessions that every service can verify.

Accounts signs a short-lived JWT (EdDSA) into the `postsale_session` cookie and publishes
its public keys as a JWKS; the other services verify the cookie against those keys, fetched
once and refreshed when an unknown key id appears.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from fastapi import Request
from jwt import PyJWKClient

SESSION_COOKIE = "postsale_session"
ISSUER = "postsale-accounts"
AUDIENCE = "postsale"


@dataclass(frozen=True)
class CustomerSession:
    customer_id: str
    email: str
    session_id: str


class SessionVerifier:
    def __init__(self, jwks_url: str) -> None:
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)

    def verify(self, token: str | None) -> CustomerSession | None:
        """The session in `token`, or None when it is missing, expired, forged or unverifiable."""
        if not token:
            return None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
        except jwt.PyJWTError:
            return None
        return CustomerSession(customer_id=claims["sub"], email=claims["email"], session_id=claims["sid"])


def current_customer(request: Request) -> CustomerSession | None:
    """The logged-in customer of a request, verified against accounts' published keys."""
    verifier: SessionVerifier = request.app.state.session_verifier
    return verifier.verify(request.cookies.get(SESSION_COOKIE))
