"""Back-office staff for a service's own tests: a signing key of its own, and tokens for an owner
and a support user that the service verifies as it verifies accounts' tokens in production; and a
test browser whose forms carry the pages' CSRF token.

    staff = StaffTokens()
    staff.install(app)                      # the app verifies against this key, not accounts' JWKS
    client.cookies.set(STAFF_COOKIE, staff.token("owner"))
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from postsale.runtime.auth import ISSUER
from postsale.runtime.staff import STAFF_AUDIENCE, StaffVerifier


class StaffTokens:
    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()

    def install(self, app) -> None:
        app.state.staff_verifier = StaffVerifier(key=self._key.public_key())

    def token(self, role: str = "owner", *, email: str | None = None,
              lifetime: timedelta = timedelta(minutes=15)) -> str:
        now = datetime.now(timezone.utc)
        return jwt.encode({"iss": ISSUER, "aud": STAFF_AUDIENCE, "sub": f"stf_{role}", "role": role,
                           "email": email or f"{role}@store.test", "name": role.title(),
                           "sid": f"sls_{uuid.uuid4().hex}", "iat": now, "exp": now + lifetime},
                          self._key, algorithm="EdDSA")


class FormBrowser(TestClient):
    """A browser on a service's pages for its tests: each form it posts carries the CSRF token that
    the service's pages carry (read from `csrf_page`), unless `csrf=False`."""

    csrf_page = "/admin/dashboard"

    def post(self, url, *, data=None, csrf: bool = True, **kwargs):
        if csrf and isinstance(data, dict) and "csrf_token" not in data:
            data = {**data, "csrf_token": self.csrf_token()}
        return super().post(url, data=data, **kwargs)

    def csrf_token(self) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', self.get(self.csrf_page).text).group(1)
