"""Where a webhook may go. Postsale's process sits inside the seller's network, so an endpoint URL
is a way to reach what is behind it (server-side request forgery): in production only https URLs
whose host resolves to public addresses are called, and every attempt checks again, since DNS can
change after the endpoint was registered. Redirects are never followed.

Private targets (loopback, private networks, link-local, and plain http to this machine) are
allowed when `NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS=true`, and by default in local development
(Postsale's own notifications URL is plain http on this machine, as `make run` and the tests
start it). Plain http is only ever allowed to this machine.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

MAX_URL_LENGTH = 2000


class TargetRefused(ValueError):
    """The URL may not be called, in words for the seller."""


def is_local_development(public_url: str) -> bool:
    """Postsale runs for development on this machine: its own URL is plain http on loopback."""
    parts = urlsplit(public_url)
    return parts.scheme == "http" and _is_loopback_name(parts.hostname or "")


def check_url(url: str, *, private_allowed: bool) -> str:
    """The URL when an endpoint may have it; TargetRefused saying why not. Resolves nothing."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in url):
        raise TargetRefused(f"must be a URL of at most {MAX_URL_LENGTH} characters, without spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
        httpx.URL(url)  # what the sender will call must be a URL its HTTP client takes
    except (ValueError, httpx.InvalidURL) as exc:
        raise TargetRefused(f"is not a valid URL: {exc}") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRefused("must be an https URL, such as https://example.com/webhooks/postsale")
    if parts.username or parts.password:
        raise TargetRefused("must not carry a user name or password; verify the signature instead")
    if parts.fragment:
        raise TargetRefused("must not have a #fragment")
    if parts.scheme == "http" and not (private_allowed and _is_loopback_name(host)):
        raise TargetRefused("must be https (plain http is allowed only to this machine, in development)")
    if not private_allowed and (_is_loopback_name(host) or _literal_is_private(host)):
        raise TargetRefused("points to a private or loopback address, which Postsale does not call in production "
                            "(NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS)")
    return url


def check_resolved(url: str, *, private_allowed: bool) -> None:
    """Before each attempt: TargetRefused when the host does not resolve, or resolves to an address
    that is not public while private targets are refused."""
    check_url(url, private_allowed=private_allowed)
    if private_allowed:
        return
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{parts.hostname} does not resolve: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not _is_public(address):
            raise TargetRefused(f"{parts.hostname} resolves to {address}, which is not a public address")


def _is_loopback_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _literal_is_private(host: str) -> bool:
    try:
        return not _is_public(ipaddress.ip_address(host))
    except ValueError:
        return False  # a name: checked when it is resolved


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


def private_allowed(setting: bool | None, notifications_url: str) -> bool:
    """`NOTIFICATIONS_WEBHOOK_PRIVATE_TARGETS` when set, else whether this is local development."""
    return setting if setting is not None else is_local_development(notifications_url)
