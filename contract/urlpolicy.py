"""The one URL-safety policy: which hosts and addresses a user-supplied URL may reach.

One set of lists, three callers, each with its documented strength:

- admission (`hooks`, and the CRD's CEL rule generated from these lists): no DNS, because hooks
  are pure. A URL must be http(s) with a host and no user info, and its host must not be a literal
  loopback, private, link-local or unspecified address, `localhost`, or a cloud metadata name or
  address (`is_http_url`, `is_internal_url`).
- fetch (`tuning` inputs): after DNS, every address the host resolves to must be public unicast
  (`address_problem`); the downloader then connects to a checked address, so a DNS answer that
  changes cannot redirect it.
- registry token realms (`artifacts`): private registries are normal in a cluster, so only
  link-local, multicast, unspecified and metadata hosts are refused (`realm_host_problem`).
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = [
    "METADATA_HOSTNAMES", "METADATA_ADDRESSES", "is_http_url", "is_internal_host", "is_internal_url",
    "address_problem", "realm_host_problem",
]

# Cloud metadata services by name, and the ones some providers place on addresses that Python's
# ipaddress does not call private (Alibaba's is in the shared address space 100.64/10).
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.google", "instance-data.ec2.internal"})
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _host(host: str) -> str:
    return host.lower().strip("[]").rstrip(".")


def is_http_url(url: str) -> bool:
    """http(s), with a host, no user info and no whitespace in the authority."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc and not any(
        c.isspace() for c in parts.netloc
    )


def is_internal_host(host: str) -> bool:
    """Admission's check, without DNS: loopback, private, link-local, unspecified or metadata."""
    host = _host(host)
    if host == "localhost" or host.endswith(".localhost") or host in METADATA_HOSTNAMES:
        return True
    ip = _ip(host)
    if ip is None:
        return False
    return ip in METADATA_ADDRESSES or ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def is_internal_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return bool(host) and is_internal_host(host)


def address_problem(address: str) -> str | None:
    """The fetch check: why a resolved address must not be fetched, or None for public unicast."""
    ip = _ip(address)
    if ip is None:
        return "not an IP address"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for name in ("is_unspecified", "is_loopback", "is_link_local", "is_private", "is_multicast", "is_reserved"):
        if getattr(ip, name):
            return f"a {name[3:].replace('_', '-')} address"
    if not ip.is_global:
        return "not a public address"
    return None


def realm_host_problem(host: str) -> str | None:
    """The token-realm check: private registries pass; metadata, link-local, multicast, unspecified do not."""
    host = _host(host)
    if host in METADATA_HOSTNAMES:
        return "a cloud metadata host"
    ip = _ip(host)
    if ip is None:
        return None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for name in ("is_link_local", "is_multicast", "is_unspecified"):
        if getattr(ip, name):
            return f"a {name[3:].replace('_', '-')} address"
    return None
