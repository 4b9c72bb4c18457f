"""Is a user-supplied URL safe to fetch from inside the cluster? (no DNS: hooks stay pure)"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.google", "instance-data.ec2.internal"})


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc and not any(
        c.isspace() for c in parts.netloc
    )


def is_internal_host(host: str) -> bool:
    """Loopback, private, link-local, unspecified or a cloud metadata name."""
    host = host.lower().strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost") or host in _METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def is_internal_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return bool(host) and is_internal_host(host)
