"""Fetch input URLs into the data directory: checked, size-limited, retried, with progress lines.

Every hop (including redirects) is checked with urlsafety.check_url, and the connection goes to an
address that check approved (Host header and TLS SNI keep the original name), so DNS rebinding
cannot point the download at an internal service after the check.
"""
from __future__ import annotations

import logging
import os
import re
import ssl
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from .errors import DownloadError
from .urlsafety import CheckedURL, check_url, redact

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024**3
MAX_REDIRECTS = 5
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    pass


def filename_for(url: str, index: int) -> str:
    """A safe local file name from the URL path's last segment (the query string is dropped)."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return f"{index:03d}-{name or 'data'}"


def _pinned_request(client: httpx.Client, checked: CheckedURL) -> httpx.Request:
    address = checked.addresses[0]
    netloc_host = f"[{address}]" if ":" in address else address
    parts = urlsplit(checked.url)
    pinned = urlunsplit((parts.scheme, f"{netloc_host}:{checked.port}", parts.path or "/", parts.query, ""))
    default_port = 443 if checked.scheme == "https" else 80
    host_header = checked.host if checked.port == default_port else f"{checked.host}:{checked.port}"
    return client.build_request(
        "GET", pinned, headers={"Host": host_header}, extensions={"sni_hostname": checked.host})


def _fetch_once(client, url, target: Path, *, allow_private: bool, max_bytes: int, progress_every: float) -> int:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        checked = check_url(current, allow_private=allow_private)
        try:
            response = client.send(_pinned_request(client, checked), stream=True)
        except httpx.TransportError as err:
            raise _Retryable(f"{type(err).__name__}: {err}") from err
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                current = urljoin(current, location)
                continue
            if response.status_code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise DownloadError(f"input URL {redact(url)!r} answered HTTP {response.status_code}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise DownloadError(
                    f"input URL {redact(url)!r} is {declared} bytes, over the limit of {max_bytes} bytes")
            return _stream_to(response, target, url=url, declared=declared, max_bytes=max_bytes,
                              progress_every=progress_every)
        finally:
            response.close()
    raise DownloadError(f"input URL {redact(url)!r} redirected more than {MAX_REDIRECTS} times")


def _stream_to(response, target: Path, *, url, declared, max_bytes, progress_every) -> int:
    partial = target.with_name(target.name + ".part")
    received, started, last = 0, time.monotonic(), time.monotonic()
    try:
        with open(partial, "wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"input URL {redact(url)!r} exceeded the limit of {max_bytes} bytes")
                out.write(chunk)
                now = time.monotonic()
                if now - last >= progress_every:
                    last = now
                    total = f" of {declared / 2**20:.1f} MiB" if declared else ""
                    log.info("download %s: %.1f MiB%s (%.1f MiB/s)", redact(url), received / 2**20, total,
                             received / 2**20 / max(now - started, 1e-9))
    except httpx.TransportError as err:
        partial.unlink(missing_ok=True)
        raise _Retryable(f"{type(err).__name__}: {err}") from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if received == 0:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"input URL {redact(url)!r} returned an empty body")
    os.replace(partial, target)
    return received


def download_urls(urls: list[str], dest: Path, *, allow_private: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                  attempts: int = 3, backoff_seconds: float = 2.0, timeout_seconds: float = 60.0,
                  progress_every: float = 5.0, verify: ssl.SSLContext | bool = True) -> list[Path]:
    """Download every URL into `dest` (created); return the files in URL order.

    `verify` is httpx's TLS verification setting (an SSLContext for a private CA)."""
    for url in urls:  # fail on any unsafe URL before fetching the first one
        check_url(url, allow_private=allow_private)
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    with httpx.Client(timeout=timeout_seconds, follow_redirects=False, trust_env=False, verify=verify) as client:
        for index, url in enumerate(urls):
            target = dest / filename_for(url, index)
            for attempt in range(1, attempts + 1):
                try:
                    size = _fetch_once(client, url, target, allow_private=allow_private, max_bytes=max_bytes,
                                       progress_every=progress_every)
                    break
                except _Retryable as err:
                    if attempt == attempts:
                        raise DownloadError(
                            f"input URL {redact(url)!r} failed after {attempts} attempts: {err}") from err
                    delay = backoff_seconds * 2 ** (attempt - 1)
                    log.warning("download %s attempt %d/%d failed (%s); retrying in %.1fs",
                                redact(url), attempt, attempts, err, delay)
                    time.sleep(delay)
            log.info("downloaded %s -> %s (%.1f MiB)", redact(url), target.name, size / 2**20)
            files.append(target)
    return files
