"""Decide whether an input URL may be fetched: http(s) only, and every address it resolves to public
(the "fetch" strength of `contract.urlpolicy`).

Torch-free and IO-light (one DNS lookup) so the CLI can reject a URL before loading anything.
The downloader connects to one of the addresses checked here (see download.py) so a DNS answer that
changes between the check and the request cannot redirect the job to an internal address.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from contract.urlpolicy import address_problem

from .errors import UnsafeURLError

ALLOWED_SCHEMES = ("http", "https")


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
