"""The password rules, shared so that checkout can check a password chosen on its payment page
before charging, by the same rules accounts applies when it sets the password. Hashing stays in
accounts, the only service that stores passwords.

ASVS 5.0 level 2: at least 8 characters, long passphrases welcome (up to 1024, well over the 64
that must be allowed), any character, no composition rules, and none of the commonly breached
passwords in `data/common-passwords.txt`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 8
# Long passphrases are welcome; the bound keeps hashing cheap and any form small.
MAX_LENGTH = 1024
COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_common(password: str) -> bool:
    """The password, ignoring case and surrounding spaces, is one of the commonly breached ones."""
    return password.strip().lower() in common_passwords()


def password_problem(password: str, repeated: str) -> str | None:
    """What is wrong with a chosen password and its repetition, for the customer; None when nothing."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    if is_common(password):
        return "That password is one of the most common ones, which others guess first. Choose another one."
    if password != repeated:
        return "The two passwords are not the same."
    return None
