"""Signing with the Standard Webhooks scheme (https://www.standardwebhooks.com), for every call
Postsale makes to a system it does not run: entitlements' calls to membership platforms and
notifications' webhooks to the seller's endpoints.

A secret is `whsec_` and the base64 of random bytes. Each attempt carries `webhook-id` (the same
on every retry, for the receiver's deduplication), `webhook-timestamp` (Unix seconds of the
attempt) and `webhook-signature`: `v1,` and the base64 of HMAC-SHA256 over
`<id>.<timestamp>.<body>`, keyed with the secret's decoded bytes. Any Standard Webhooks library
verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


def new_secret() -> str:
    """A signing secret as Standard Webhooks serialises it: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ValueError when it is not base64."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def is_valid_secret(secret: str) -> bool:
    """`whsec_` followed by 24 to 64 bytes in base64."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        return MIN_KEY_BYTES <= len(secret_key(secret)) <= MAX_KEY_BYTES
    except ValueError:
        return False


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one attempt."""
    digest = hmac.new(secret_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body)}
