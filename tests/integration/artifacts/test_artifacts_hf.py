"""`hf://` sources and `kaito mirror`.

The real Hugging Face hub cannot be reached from these machines, so the hub client
(huggingface_hub) talks to a local stand-in for the hub's HTTP API on 127.0.0.1, selected with
HF_ENDPOINT: `GET /api/models/{repo}/revision/{rev}`, `GET /api/models/{repo}/tree/{sha}`,
and `HEAD`/`GET /{repo}/resolve/{sha}/{path}`, answering with the headers the real hub sends
(X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size). One repository is private: it needs a token.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

import artifacts
from artifacts import DigestMismatch, NotFound, Unauthorized
from tests.support.registry import RecordingProxy, registry_fixture

registry = registry_fixture()
COMMIT = "0a67737cc96d2554230f90338b163bc6380a2a85"
TOKEN = "hf_test_token_never_logged_123"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: set[str] = set()
        self.tampered: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, status: int = 200) -> None:
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _repo(self, repo: str) -> dict[str, bytes] | None:
                if repo not in hub.repos:
                    self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"})
                    return None
                if repo in hub.private and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, b'{"error": "Invalid credentials"}', {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"})
                    return None
                return hub.repos[repo]

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                hub.requests.append((self.command, path, self.headers.get("Authorization")))
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    for marker in ("/revision/", "/tree/"):
                        if marker in rest:
                            repo, _, rev = rest.partition(marker)
                            break
                    else:
                        return self._json({"error": "bad"}, 400)
                    files = self._repo(repo)
                    if files is None:
                        return
                    rev = rev.split("/", 1)[0]
                    if rev not in ("main", COMMIT):
                        return self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound", "Content-Type": "application/json"})
                    if marker == "/revision/":
                        return self._json({"id": repo, "modelId": repo, "sha": COMMIT, "private": repo in hub.private,
                                           "siblings": [{"rfilename": n} for n in files]})
                    return self._json([entry for name, data in sorted(files.items()) for entry in [_tree_entry(name, data)]])
                if "/resolve/" in path:
                    repo, _, rest = path[1:].partition("/resolve/")
                    files = self._repo(repo)
                    if files is None:
                        return
                    rev, _, name = rest.partition("/")
                    if name not in files:
                        return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
                    data = files[name]
                    etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else _git_oid(data)
                    body = hub.tampered.get((repo, name), data)
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
                    if name.endswith(".safetensors"):
                        headers["X-Linked-Etag"] = f'"{etag}"'
                        headers["X-Linked-Size"] = str(len(data))
                    return self._send(200, body, headers)
                self._send(404)

            do_HEAD = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _tree_entry(name: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": name}
    if name.endswith(".safetensors"):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


@pytest.fixture(scope="module")
def hub():
    fake = FakeHub()
    fake.repos["microsoft/tiny-phi"] = {
        "config.json": b'{"architectures": ["Phi3ForCausalLM"]}',
        "model.safetensors": os.urandom(400_000),
        "tokenizer/tokenizer.json": b'{"model": {}}',
        "original/consolidated.pth": b"not wanted in the mirror",
    }
    fake.repos["acme/private-model"] = {"config.json": b"{}", "model.safetensors": os.urandom(1000)}
    fake.private.add("acme/private-model")
    fake.repos["acme/tampered"] = {"config.json": b"{}", "model.safetensors": os.urandom(5000)}
    fake.tampered[("acme/tampered", "model.safetensors")] = os.urandom(5000)
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _env(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != artifacts.MARKER}


def test_hf_source_resolves_verified_into_the_cache_and_dest(hub, tmp_path):
    path = artifacts.resolve("hf://microsoft/tiny-phi@main", cache_dir=tmp_path / "cache")
    assert artifacts.is_complete(path) and path.name == COMMIT
    assert _files(path) == hub.repos["microsoft/tiny-phi"]

    # Pinned to the commit and already cached: not a single hub request.
    hub.requests.clear()
    dest = artifacts.resolve(f"hf://microsoft/tiny-phi@{COMMIT}", dest=tmp_path / "model", cache_dir=tmp_path / "cache")
    assert hub.requests == []
    assert _files(dest) == hub.repos["microsoft/tiny-phi"]


def test_hf_errors_are_clear_and_the_token_stays_secret(hub, tmp_path, monkeypatch, caplog):
    with pytest.raises(NotFound, match="hf://acme/nothing"):
        artifacts.resolve("hf://acme/nothing@main", cache_dir=tmp_path / "cache")
    with pytest.raises(NotFound, match="revision 'v9'"):
        artifacts.resolve("hf://microsoft/tiny-phi@v9", cache_dir=tmp_path / "cache")
    with pytest.raises((Unauthorized, NotFound), match="HF_TOKEN|refused"):
        artifacts.resolve("hf://acme/private-model@main", cache_dir=tmp_path / "cache")

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with caplog.at_level(logging.DEBUG):
        path = artifacts.resolve("hf://acme/private-model@main", cache_dir=tmp_path / "cache")
    assert _files(path) == hub.repos["acme/private-model"]
    assert ("GET", f"/api/models/acme/private-model/revision/main", f"Bearer {TOKEN}") in hub.requests
    assert TOKEN not in caplog.text

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    assert artifacts.resolve("hf://acme/private-model@main", cache_dir=tmp_path / "cache2").is_dir()


def test_hf_download_that_does_not_match_the_listing_is_rejected(hub, tmp_path):
    with pytest.raises(DigestMismatch, match="model.safetensors"):
        artifacts.resolve("hf://acme/tampered@main", dest=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache" / "hf").rglob(artifacts.MARKER))


def test_mirror_hf_to_oci_then_pull(hub, registry, tmp_path):
    ref = registry.ref("mirror/tiny-phi", COMMIT[:12])
    digest = artifacts.mirror("hf://microsoft/tiny-phi@main", ref, cache_dir=tmp_path / "cache", exclude=["original/*"])
    manifest = httpx.get(f"{registry.url}/v2/mirror/tiny-phi/manifests/{digest}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert manifest["artifactType"] == artifacts.MODEL_ARTIFACT_TYPE
    assert manifest["annotations"]["org.opencontainers.image.source"] == f"hf://microsoft/tiny-phi@{COMMIT}"

    wanted = {k: v for k, v in hub.repos["microsoft/tiny-phi"].items() if not k.startswith("original/")}
    with RecordingProxy(registry.host) as proxy:
        # A node that already pulled the repo from the hub has the weights: only small files move.
        path = artifacts.resolve(f"{proxy.host}/mirror/tiny-phi:{COMMIT[:12]}", dest=tmp_path / "out", cache_dir=tmp_path / "cache")
        fetched = {r[1].rsplit("/", 1)[1] for r in proxy.blob_gets()}
    assert _files(path) == wanted
    assert "sha256:" + hashlib.sha256(wanted["model.safetensors"]).hexdigest() not in fetched
    assert len(fetched) == 2  # config.json and tokenizer/tokenizer.json
