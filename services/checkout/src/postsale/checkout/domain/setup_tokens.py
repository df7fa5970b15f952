"""The account setup token a new buyer's browser carries from checkout to accounts.

It is derived from the checkout session (itself a secret only the buyer's browser holds),
so it can be handed out again after a refresh without being stored. Only its SHA-256
travels on the purchases topic.
"""

import hashlib
import hmac


def setup_token(secret_key: str, checkout_session_id: str) -> str:
    return hmac.new(secret_key.encode(), f"account-setup:{checkout_session_id}".encode(), hashlib.sha256).hexdigest()


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
