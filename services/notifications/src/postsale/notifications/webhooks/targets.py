"""Where a webhook may go. Postsale's process sits inside the seller's network, so an endpoint URL
is a way to reach what is behind it (server-side request forgery): unless private targets are
allowed, only https URLs whose host resolves to public addresses are called. Every attempt
resolves the name again (DNS can change after the endpoint was registered) and connects to the
address it checked, never resolving twice (DNS rebinding). Redirects are never followed.

Private targets (loopback, private networks, link-local, and plain http to this machine) are
allowed only when `NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS=true` (`make run` and the tests set it).
Plain http is only ever allowed to this machine.
"""

from __future__ import annotations

import socket

from postsale.runtime import targets as shared
from postsale.runtime.targets import MAX_URL_LENGTH, TargetRefused, pinned

# What the webhooks code uses from here; `socket` is the module the shared check resolves names with.
__all__ = ["MAX_URL_LENGTH", "SETTING", "TargetRefused", "check_resolved", "check_url", "pinned", "private_allowed",
           "socket"]

SETTING = "NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS"


def check_url(url: str, *, private_allowed: bool) -> str:
    """The URL when an endpoint may have it; TargetRefused saying why not. Resolves nothing."""
    return shared.check_url(url, private_allowed=private_allowed, setting=SETTING)


def check_resolved(url: str, *, private_allowed: bool) -> str | None:
    """The address to call (None: a private target that is allowed); TargetRefused saying why not."""
    return shared.check_resolved(url, private_allowed=private_allowed, setting=SETTING)


def private_allowed(setting: bool | None) -> bool:
    """`NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS`: refused unless set to true, wherever Postsale runs."""
    return setting is True
