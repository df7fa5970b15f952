"""Session tokens: EdDSA-signed JWTs whose public key is published as a JWKS."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from postsale.runtime.auth import AUDIENCE, ISSUER, CustomerSession, RevokedSessions
from postsale.runtime.staff import STAFF_AUDIENCE


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SessionSigner:
    def __init__(self, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("ACCOUNTS_SESSION_SIGNING_KEY must be an Ed25519 private key in PEM")
        self._key = key
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._public_x = _b64url(public)
        self.key_id = _b64url(hashlib.sha256(public).digest()[:12])

    def sign(self, *, customer_id: str, email: str, session_id: str, lifetime: timedelta) -> str:
        now = datetime.now(timezone.utc)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": customer_id, "email": email, "sid": session_id,
                  "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.key_id})

    def sign_staff(self, *, staff_id: str, email: str, name: str, role: str, session_id: str,
                   lifetime: timedelta) -> str:
        """A back-office token: the same key, the staff audience (`postsale.runtime.staff`)."""
        now = datetime.now(timezone.utc)
        claims = {"iss": ISSUER, "aud": STAFF_AUDIENCE, "sub": staff_id, "email": email, "name": name, "role": role,
                  "sid": session_id, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.key_id})

    def public_key(self):
        return self._key.public_key()

    def jwks(self) -> dict:
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": self._public_x, "kid": self.key_id,
                          "use": "sig", "alg": "EdDSA"}]}


def generate_private_key_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class LocalSessionVerifier:
    """Accounts verifies its own session tokens with the key it holds, never through its own JWKS
    endpoint: a check made in an async dependency (the CSRF check of a form) would otherwise wait on
    a request to this very process."""

    def __init__(self, signer: SessionSigner, revoked: RevokedSessions | None = None) -> None:
        self._key = signer.public_key()
        self.revoked = revoked

    def verify(self, token: str | None) -> CustomerSession | None:
        if not token:
            return None
        try:
            claims = jwt.decode(token, self._key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
        except jwt.PyJWTError:
            return None
        if self.revoked is not None and self.revoked.is_ended(claims["sid"]):
            return None
        return CustomerSession(customer_id=claims["sub"], email=claims["email"], session_id=claims["sid"])
