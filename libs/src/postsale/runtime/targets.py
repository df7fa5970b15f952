"""Where Postsale may send a request to an address a seller typed (a webhook endpoint, a third-party
platform's endpoint). Postsale's processes sit inside the seller's network, so such a URL is a way
to reach what is behind it (server-side request forgery): unless private targets are allowed, only
https URLs whose host resolves to public addresses are called. Every attempt resolves the name
again (DNS can change after the URL was saved) and connects to the address it checked, never
resolving twice (DNS rebinding). Redirects must not be followed by the caller.

Private targets (loopback, private networks, link-local, reserved, and plain http to this machine)
are allowed only when the service's setting says so (`setting` names it in the refusal), which
development and the tests set. Plain http is only ever allowed to this machine.

Pure address checks: no settings are read here, each service passes its own.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from postsale.runtime.auth import is_loopback_name

MAX_URL_LENGTH = 2000


class TargetRefused(ValueError):
    """The URL may not be called, in words for the seller."""


def check_url(url: str, *, private_allowed: bool, setting: str) -> str:
    """The URL when it may be called; TargetRefused saying why not. Resolves nothing: a name is
    checked when it is resolved (`check_resolved`), an address literal here."""
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
        raise TargetRefused("must be an https URL, such as https://example.com/postsale")
    if parts.username or parts.password:
        raise TargetRefused("must not carry a user name or password; verify the signature instead")
    if parts.fragment:
        raise TargetRefused("must not have a #fragment")
    if parts.scheme == "http" and not (private_allowed and is_loopback_name(host)):
        raise TargetRefused("must be https (plain http is allowed only to this machine, in development)")
    if not private_allowed and (is_loopback_name(host) or _literal_is_private(host)):
        raise TargetRefused(f"points to a private or loopback address (or a reserved one), which Postsale "
                            f"calls only when {setting}=true")
    return url


def check_resolved(url: str, *, private_allowed: bool, setting: str) -> str | None:
    """Before each attempt: the public address to connect to; None while private targets are
    allowed (nothing to keep out). TargetRefused when the host does not resolve, or resolves to an
    address that is not public."""
    check_url(url, private_allowed=private_allowed, setting=setting)
    if private_allowed:
        return None
    parts = urlsplit(url)
    if _literal(parts.hostname or "") is not None:
        return parts.hostname  # an address already, checked by check_url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{parts.hostname} does not resolve: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not is_public(address):
            raise TargetRefused(f"{parts.hostname} resolves to {address}, which is not a public address")
    if not addresses:
        raise TargetRefused(f"{parts.hostname} does not resolve")
    return str(addresses[0])


def pinned(url: str, address: str | None) -> tuple[httpx.URL, dict[str, str], dict]:
    """The URL to call, its extra headers and its request extensions: to `address` (the one
    checked) with the original name in `Host` and in TLS (SNI and certificate check), so the
    connection goes where the check looked however the name resolves a moment later."""
    original = httpx.URL(url)
    if address is None or address == original.host:
        return original, {}, {}
    host_header = original.host if original.port is None else f"{original.host}:{original.port}"
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return original.copy_with(host=address), {"host": host_header}, extensions


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address: not private, loopback, link-local (169.254.169.254, the
    cloud's metadata service), shared, reserved or multicast; an IPv4-mapped IPv6 one as its IPv4."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _literal_is_private(host: str) -> bool:
    address = _literal(host)
    return address is not None and not is_public(address)  # a name: checked when it is resolved
