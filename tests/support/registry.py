"""Start Debian's docker-registry (distribution 2.8) on 127.0.0.1 for tests.

    from tests.support.registry import run_registry, registry_fixture

    registry = registry_fixture()                                  # module-scoped pytest fixture
    auth_registry = registry_fixture(users={"alice": "s3cret"})    # htpasswd (bcrypt) auth

    with run_registry(tmp_path) as reg:                            # or as a context manager
        push(model_dir, reg.ref("models/tiny", "v1"))             # "oci://127.0.0.1:PORT/models/tiny:v1"

While a registry runs, its host:port is in KAITO_INSECURE_REGISTRIES so clients use plain HTTP.
A missing binary is a test FAILURE with the install command, never a silent skip.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = (
    "docker-registry is not installed: run `apt-get install -y docker-registry apache2-utils` "
    "(./dev.sh test does this when run as root), then stop the service the package starts "
    "(`systemctl stop docker-registry` or `pkill -x docker-registry`)"
)


class RegistryUnavailable(RuntimeError):
    pass


@dataclass
class Registry:
    host: str                      # "127.0.0.1:PORT"
    root: Path                     # the storage root directory
    workdir: Path
    process: subprocess.Popen
    users: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def blob_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes (to corrupt it in tests)."""
        hexpart = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def docker_config(self, directory: Path, username: str | None = None, password: str | None = None) -> Path:
        """Write a config.json (the imagePullSecret format) for this registry; returns its path."""
        if username is None:
            username, password = next(iter(self.users.items()))
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "config.json"
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _htpasswd(users: dict[str, str]) -> str:
    lines = []
    tool = shutil.which("htpasswd")
    for user, password in users.items():
        if tool:
            out = subprocess.run([tool, "-Bbn", user, password], check=True, capture_output=True, text=True).stdout
            lines.append(out.strip())
        else:
            try:
                import bcrypt
            except ImportError as exc:
                raise RegistryUnavailable("htpasswd (apache2-utils) is needed for auth tests: apt-get install -y apache2-utils") from exc
            lines.append(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}")
    return "\n".join(lines) + "\n"


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: kaito-test", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def _wait_ready(host: str, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RegistryUnavailable(f"docker-registry exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RegistryUnavailable(f"docker-registry did not answer on {host} within {timeout}s")


@contextmanager
def run_registry(workdir: Path | None = None, *, users: dict[str, str] | None = None) -> Iterator[Registry]:
    """Run a registry on a free loopback port until the block exits."""
    if not os.access(BINARY, os.X_OK):
        raise RegistryUnavailable(INSTALL_HINT)
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="kaito-registry-")) if own_tmp else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    htpasswd = None
    if users:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(_htpasswd(users))
    process = None
    try:
        for _ in range(5):  # a free port can be taken between probe and bind
            port = _free_port()
            config = workdir / "config.yml"
            config.write_text(_config(root, port, htpasswd))
            log = open(workdir / "registry.log", "wb")
            process = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            host = f"127.0.0.1:{port}"
            try:
                _wait_ready(host, process)
                break
            except RegistryUnavailable:
                process.terminate()
                process.wait(5)
                process = None
        if process is None:
            raise RegistryUnavailable(f"docker-registry did not start; see {workdir / 'registry.log'}")
        previous = os.environ.get("KAITO_INSECURE_REGISTRIES")
        os.environ["KAITO_INSECURE_REGISTRIES"] = ",".join(filter(None, [previous, host]))
        try:
            yield Registry(host=host, root=root, workdir=workdir, process=process, users=dict(users or {}))
        finally:
            if previous is None:
                os.environ.pop("KAITO_INSECURE_REGISTRIES", None)
            else:
                os.environ["KAITO_INSECURE_REGISTRIES"] = previous
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def registry_fixture(*, users: dict[str, str] | None = None, scope: str = "module"):
    """A pytest fixture (assign it to a module-level name) yielding a running Registry."""
    import pytest

    @pytest.fixture(scope=scope)
    def _registry(tmp_path_factory):
        try:
            with run_registry(tmp_path_factory.mktemp("registry"), users=users) as reg:
                yield reg
        except RegistryUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)

    return _registry


class RecordingProxy:
    """A loopback HTTP proxy in front of a registry that records requests and can cut a response.

        with RecordingProxy(reg.host) as proxy:       # pull from proxy.host instead of reg.host
            proxy.cut_after(digest, 1000)             # the next GET of that blob dies after 1000 body bytes
            ...
            proxy.requests                            # [(method, path, range_header_or_None), ...]

    With `bearer={"user": "password"}` it also plays a token-auth registry (as ACR, GHCR, Docker Hub do):
    requests without the token get `401 WWW-Authenticate: Bearer realm=".../token",service=..,scope=..`,
    and GET /token hands out the token for valid Basic credentials.
    """

    TOKEN = "test-bearer-token-0123456789"

    def __init__(self, upstream: str, bearer: dict[str, str] | None = None) -> None:
        import http.client
        import http.server
        import threading

        self.upstream = upstream
        self.requests: list[tuple[str, str, str | None]] = []
        self._cuts: dict[str, int] = {}
        self._stalls: dict[str, int] = {}
        self._release = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _gate(self) -> bool:
                """True when the request may pass to the registry."""
                if bearer is None:
                    return True
                if self.path.startswith("/token"):
                    got = self.headers.get("Authorization", "")
                    ok = any(got == "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in bearer.items())
                    if ok:
                        self._reply(200, json.dumps({"token": proxy.TOKEN}).encode(), {"Content-Type": "application/json"})
                    else:
                        self._reply(401, b'{"details": "invalid credentials"}', {"Content-Type": "application/json"})
                    return False
                if self.headers.get("Authorization") == f"Bearer {proxy.TOKEN}":
                    return True
                repo = self.path.split("/v2/", 1)[-1].split("/manifests/")[0].split("/blobs/")[0]
                challenge = f'Bearer realm="http://{proxy.host}/token",service="kaito-test",scope="repository:{repo}:pull"'
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self._reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
                return False

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                if not self._gate():
                    return
                with proxy._lock:
                    cut = next((n for key, n in proxy._cuts.items() if self.command == "GET" and key in self.path), None)
                    if cut is not None:
                        proxy._cuts = {k: v for k, v in proxy._cuts.items() if k not in self.path}
                    stall = next((n for key, n in proxy._stalls.items() if self.command == "GET" and key in self.path), None)
                    if stall is not None:
                        proxy._stalls = {k: v for k, v in proxy._stalls.items() if k not in self.path}
                        cut = stall
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "authorization")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.end_headers()
                sent = 0
                while self.command != "HEAD":
                    chunk = resp.read(64 * 1024)
                    if not chunk:
                        break
                    if cut is not None and sent + len(chunk) >= cut:
                        self.wfile.write(chunk[: cut - sent])
                        self.wfile.flush()
                        if stall is not None:
                            proxy._release.wait(60)  # hold the connection open: the client is mid-download
                        self.close_connection = True
                        import socket as _socket

                        self.connection.shutdown(_socket.SHUT_RDWR)
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def cut_after(self, digest: str, nbytes: int) -> None:
        with self._lock:
            self._cuts[digest] = nbytes

    def stall_after(self, digest: str, nbytes: int) -> None:
        """The next GET of that blob sends `nbytes` of body, then hangs until the proxy closes."""
        with self._lock:
            self._stalls[digest] = nbytes

    def blob_gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and "/blobs/" in r[1]]

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def __enter__(self) -> "RecordingProxy":
        self._thread.start()
        self._previous = os.environ.get("KAITO_INSECURE_REGISTRIES")
        os.environ["KAITO_INSECURE_REGISTRIES"] = ",".join(filter(None, [self._previous, self.host]))
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._previous is None:
            os.environ.pop("KAITO_INSECURE_REGISTRIES", None)
        else:
            os.environ["KAITO_INSECURE_REGISTRIES"] = self._previous
