"""The password rules, shared so that checkout can check a password chosen on its payment page
before charging, by the same rules accounts applies when it sets the password. Hashing stays in
accounts, the only service that stores passwords."""

from __future__ import annotations

MIN_LENGTH = 8
# Long passphrases are welcome; the bound keeps hashing cheap and any form small.
MAX_LENGTH = 1024


def password_problem(password: str, repeated: str) -> str | None:
    """What is wrong with a chosen password and its repetition, for the customer; None when nothing."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    if password != repeated:
        return "The two passwords are not the same."
    return None
