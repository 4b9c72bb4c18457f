"""Decide whether an input URL may be fetched: http(s) only, and every address it resolves to public.

Torch-free and IO-light (one DNS lookup) so the CLI can reject a URL before loading anything.
The downloader connects to one of the addresses checked here (see download.py) so a DNS answer that
changes between the check and the request cannot redirect the job to an internal address.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import UnsafeURLError

ALLOWED_SCHEMES = ("http", "https")

# Cloud metadata endpoints that some providers place on addresses Python does not call private.
_METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (shared address space)
    ipaddress.ip_address("fd00:ec2::254"),
})


@dataclass(frozen=True)
class CheckedURL:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all allowed


def redact(url: str) -> str:
    """The URL without user info or query string, safe to log (queries often carry signed tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def address_problem(address: str) -> str | None:
    """Why this address must not be fetched, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    for name in ("is_unspecified", "is_loopback", "is_link_local", "is_private", "is_multicast", "is_reserved"):
        if getattr(ip, name):
            return f"a {name[3:].replace('_', '-')} address"
    if not ip.is_global:
        return "not a public address"
    return None


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UnsafeURLError(f"input URL host {host!r} does not resolve: {err.strerror}") from err
    return tuple(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, *, allow_private: bool = False, resolve=_resolve) -> CheckedURL:
    """Validate `url` and resolve its host; raise UnsafeURLError naming the problem.

    `allow_private` admits loopback/private hosts; it exists for tests against a local HTTP server.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(
            f"input URL {redact(url)!r} has scheme {scheme or '(none)'!r}; accepted schemes: {', '.join(ALLOWED_SCHEMES)}")
    host = parts.hostname
    if not host:
        raise UnsafeURLError(f"input URL {redact(url)!r} has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as err:
        raise UnsafeURLError(f"input URL {redact(url)!r} has an invalid port") from err
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeURLError(f"input URL host {host!r} resolved to no address")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise UnsafeURLError(
                    f"input URL {redact(url)!r} resolves to {address}, {problem}; only public addresses are allowed")
    return CheckedURL(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
