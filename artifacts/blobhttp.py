"""Blob bodies over http.client: each worker thread reads into one reusable buffer (recv_into).

httpx carries the control traffic (auth, manifests, uploads). For multi-GB bodies its per-chunk
Python work and copies cost more CPU than hashing; here the socket reads straight into a
preallocated buffer and hashing and writing release the GIL, so parallel fetches use every core.
Redirects (blob CDNs) are followed; the Authorization header never crosses to another origin,
and an https registry is never redirected to plain http.
"""
from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urljoin, urlsplit

_REDIRECTS = (301, 302, 303, 307, 308)


class BlobHTTP:
    def __init__(self, timeout: float = 60.0, user_agent: str = "kaito-artifacts") -> None:
        self.timeout = timeout
        self.user_agent = user_agent
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, netloc)
        conn = conns.get(key)
        if conn is None:
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
            conns[key] = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = getattr(self._local, "conns", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def get(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """GET with redirects. The caller reads the body to the end (keeps the connection) or closes it."""
        origin = urlsplit(url)[:2]
        headers = dict(headers)
        for _ in range(6):
            scheme, netloc, path, query, _ = urlsplit(url)
            if scheme not in ("http", "https"):
                raise http.client.HTTPException(f"refusing redirect to scheme {scheme!r}")
            target = path + (f"?{query}" if query else "")
            sent = {"User-Agent": self.user_agent, **headers}
            for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
                conn = self._connection(scheme, netloc)
                try:
                    conn.request("GET", target, headers=sent)
                    resp = conn.getresponse()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self._drop(scheme, netloc)
                    if attempt:
                        raise
                except BaseException:
                    self._drop(scheme, netloc)
                    raise
            resp.kaito_origin = (scheme, netloc)
            if resp.status not in _REDIRECTS:
                return resp
            resp.read()
            location = resp.getheader("Location")
            if not location:
                return resp
            url = urljoin(url, location)
            new = urlsplit(url)
            if origin[0] == "https" and new.scheme != "https":
                raise http.client.HTTPException("refusing a redirect from https to plain http")
            if (new.scheme, new.netloc) != origin:
                headers.pop("Authorization", None)
        raise http.client.HTTPException("too many redirects")

    def discard(self, resp: http.client.HTTPResponse) -> None:
        """A response not read to its end leaves bytes on the socket: close that connection."""
        resp.close()
        origin = getattr(resp, "kaito_origin", None)
        if origin is not None:
            self._drop(*origin)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
