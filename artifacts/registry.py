"""A small OCI distribution client over httpx: manifests, blob HEAD/GET (with Range), uploads, auth.

Auth follows what registries send: a request answered 401 with `WWW-Authenticate: Bearer realm=..,
service=..,scope=..` fetches a token from the realm (with Basic credentials when we have them) and
retries; a `Basic` challenge retries with Basic credentials. The token is then sent up front.
Credentials and tokens live only in request headers: never in URLs, logs or error messages.
"""
from __future__ import annotations

import http.client
import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator
from urllib.parse import urljoin, urlsplit

import httpx

from contract.urlpolicy import realm_host_problem

from . import manifest as mf
from .blobhttp import BlobHTTP
from .auth import Challenge, Credentials, load_credentials, parse_challenge, use_plain_http
from .errors import DigestMismatch, NotFound, RegistryError, Unauthorized
from .reference import OciReference

log = logging.getLogger(__name__)

USER_AGENT = "kaito-artifacts/0.1"


def _registry_error_text(resp: httpx.Response) -> str:
    """The registry's own error codes (JSON body), never headers."""
    try:
        errors = resp.json().get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)[:300]
    except Exception:  # noqa: BLE001 - any non-JSON body is simply not shown
        return ""


class RegistryClient:
    """One registry host, one repository. Thread-safe: blob fetches run in parallel over it."""

    def __init__(
        self,
        ref: OciReference,
        *,
        docker_config=None,
        insecure: bool | None = None,
        push: bool = False,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.ref = ref
        self.plain_http = use_plain_http(ref.registry, insecure)
        self.base = f"{'http' if self.plain_http else 'https'}://{ref.api_host}/v2/{ref.repository}/"
        self.scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        self._creds = credentials if credentials is not None else load_credentials(ref.registry, docker_config)
        self._authorization: str | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(
            transport=transport,
            follow_redirects=True,  # httpx drops Authorization on cross-origin redirects (blob CDNs)
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": USER_AGENT},
        )
        self._blobs = BlobHTTP(timeout=timeout, user_agent=USER_AGENT)

    def close(self) -> None:
        self._http.close()
        self._blobs.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- auth -------------------------------------------------------------------------------
    def _where_creds(self) -> str:
        if self._creds is None:
            return f"no credentials for {self.ref.registry} were found (pass a docker config, or set DOCKER_CONFIG)"
        return f"the credentials for {self.ref.registry} from {self._creds.source or 'the docker config'} were refused"

    def _check_realm(self, realm: str) -> None:
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"registry {self.ref.registry} sent an invalid token realm")
        if parts.scheme == "http" and not self.plain_http:
            raise RegistryError(f"registry {self.ref.registry} asks for credentials over plain HTTP ({parts.hostname}); refusing")
        problem = realm_host_problem(parts.hostname)
        if problem:
            raise RegistryError(f"registry {self.ref.registry} sent a token realm on a forbidden address ({parts.hostname}: {problem}); refusing")

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.ref.registry} sent a Bearer challenge without a realm")
        self._check_realm(realm)
        scopes = [self.scope]
        wanted = challenge.params.get("scope")
        if wanted and wanted not in scopes:
            scopes.append(wanted)
        params: list[tuple[str, str]] = [("scope", s) for s in scopes]
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        creds = self._creds
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": "kaito", "scope": " ".join(scopes)}
                if challenge.params.get("service"):
                    form["service"] = challenge.params["service"]
                resp = self._http.post(realm, data=form)
            else:
                headers = {}
                if creds is not None and creds.basic_header():
                    headers["Authorization"] = creds.basic_header()
                resp = self._http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service of {self.ref.registry}: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise Unauthorized(f"unauthorized: {self.ref}: {self._where_creds()} (token service answered {resp.status_code})")
        if resp.status_code != 200:
            raise RegistryError(f"token service of {self.ref.registry} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"token service of {self.ref.registry} sent no token")
        return token

    def _authenticate(self, header: str | None, sent: str | None) -> None:
        if not header:
            raise Unauthorized(f"unauthorized: {self.ref}: registry answered 401 without a challenge; {self._where_creds()}")
        challenge = parse_challenge(header)
        with self._lock:
            if self._authorization != sent:
                return  # another thread already renewed it
            if challenge.scheme == "basic":
                basic = self._creds.basic_header() if self._creds else None
                if basic is None or sent == basic:
                    raise Unauthorized(f"unauthorized: {self.ref}: {self._where_creds()}")
                self._authorization = basic
            elif challenge.scheme == "bearer":
                if sent is not None and sent.startswith("Bearer ") and challenge.params.get("error") != "insufficient_scope" and not challenge.params.get("scope"):
                    raise Unauthorized(f"unauthorized: {self.ref}: {self._where_creds()}")
                self._authorization = "Bearer " + self._fetch_token(challenge)
            else:
                raise RegistryError(f"registry {self.ref.registry} uses an unsupported auth scheme {challenge.scheme!r}")

    # ---- requests ---------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, headers: dict | None = None, content: Callable[[], Iterable[bytes] | bytes] | None = None, stream: bool = False) -> httpx.Response:
        for attempt in range(3):
            sent = self._authorization
            h = dict(headers or {})
            if sent:
                h["Authorization"] = sent
            try:
                request = self._http.build_request(method, url, headers=h, content=content() if content else None)
                resp = self._http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise RegistryError(f"cannot reach registry {self.ref.registry} ({'http' if self.plain_http else 'https'}): {type(exc).__name__}: {exc}") from exc
            if resp.status_code != 401 or attempt == 2:
                if resp.status_code == 401:
                    resp.close()
                    raise Unauthorized(f"unauthorized: {self.ref}: {self._where_creds()}")
                return resp
            challenge = resp.headers.get("www-authenticate")
            resp.close()
            self._authenticate(challenge, sent)
        raise AssertionError("unreachable")

    def _fail(self, resp: httpx.Response, what: str) -> None:
        detail = _registry_error_text(resp)
        status = resp.status_code
        if status == 404:
            raise NotFound(f"not found: {what} ({self.ref.registry} answered 404{': ' + detail if detail else ''})")
        if status in (401, 403):
            raise Unauthorized(f"unauthorized: {what}: {self._where_creds()} (HTTP {status})")
        err = RegistryError(f"registry {self.ref.registry} answered HTTP {status} for {what}{': ' + detail if detail else ''}")
        err.status = status
        raise err

    # ---- manifests --------------------------------------------------------------------------
    def get_manifest(self, reference: str | None = None) -> tuple[bytes, str, str]:
        """Return (bytes, media type, digest). A by-digest request is verified against the digest."""
        reference = reference or self.ref.reference
        resp = self._send("GET", self.base + f"manifests/{reference}", headers={"Accept": mf.ACCEPT})
        if resp.status_code != 200:
            what = str(self.ref) if reference == self.ref.reference else f"{self.ref.registry}/{self.ref.repository}@{reference}"
            self._fail(resp, what)
        data = resp.content
        digest = mf.digest_of(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest of {self.ref} has digest {digest}, expected {reference}")
        return data, resp.headers.get("content-type", ""), digest

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        resp = self._send("PUT", self.base + f"manifests/{reference}", headers={"Content-Type": media_type}, content=lambda: data)
        if resp.status_code not in (200, 201):
            self._fail(resp, f"manifest upload to {self.ref}")
        return mf.digest_of(data)

    # ---- blobs ------------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        resp = self._send("HEAD", self.base + f"blobs/{digest}")
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        self._fail(resp, f"blob {digest} in {self.ref.registry}/{self.ref.repository}")
        return False

    @contextmanager
    def open_blob(self, digest: str, offset: int = 0) -> Iterator[tuple[http.client.HTTPResponse, int]]:
        """Stream a blob from `offset` (Range). Yields (response with .readinto, the offset its body
        starts at): 0 when the registry ignored the range and sent the whole blob."""
        url = self.base + f"blobs/{digest}"
        what = f"blob {digest} of {self.ref}"
        resp = None
        try:
            for attempt in range(3):
                sent = self._authorization
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                if sent:
                    headers["Authorization"] = sent
                try:
                    resp = self._blobs.get(url, headers)
                except (OSError, http.client.HTTPException) as exc:
                    raise RegistryError(f"cannot reach registry {self.ref.registry}: {type(exc).__name__}: {exc}") from exc
                if resp.status == 401 and attempt < 2:
                    challenge = resp.getheader("WWW-Authenticate")
                    resp.read()
                    self._authenticate(challenge, sent)
                    continue
                if resp.status == 416 and offset:
                    resp.read()
                    offset = 0
                    continue
                break
            if resp.status not in (200, 206):
                body = resp.read(64 * 1024)
                self._fail(httpx.Response(resp.status, content=body), what)
            start = 0
            if resp.status == 206:
                crange = resp.getheader("Content-Range", "")
                try:
                    start = int(crange.split(" ", 1)[1].split("-", 1)[0])
                except (IndexError, ValueError):
                    raise RegistryError(f"registry {self.ref.registry} sent a malformed Content-Range for blob {digest}") from None
            yield resp, start
        finally:
            if resp is not None and not resp.isclosed():
                self._blobs.discard(resp)

    def upload_blob(self, digest: str, size: int, content: Callable[[], Iterable[bytes] | bytes]) -> None:
        """Monolithic upload: POST for a session, then one PUT with the whole body."""
        resp = self._send("POST", self.base + "blobs/uploads/", headers={"Content-Length": "0"})
        if resp.status_code not in (202, 201):
            self._fail(resp, f"blob upload to {self.ref.registry}/{self.ref.repository}")
        if resp.status_code == 201:
            return  # the registry already had it (cross-repo mount semantics)
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"registry {self.ref.registry} started an upload without a Location")
        url = urljoin(self.base, location)
        sep = "&" if "?" in url else "?"
        resp = self._send(
            "PUT",
            f"{url}{sep}digest={digest}",
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=content,
        )
        if resp.status_code not in (201, 204):
            self._fail(resp, f"blob {digest} upload to {self.ref.registry}/{self.ref.repository}")
