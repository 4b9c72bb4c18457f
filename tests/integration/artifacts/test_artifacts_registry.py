"""Push/pull against a real registry (Debian's docker-registry on 127.0.0.1, plain HTTP via
KAITO_INSECURE_REGISTRIES), with a recording proxy in front when a test counts or cuts requests."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import artifacts
from artifacts import DigestMismatch, NotFound, RegistryError
from tests.support.registry import RecordingProxy, registry_fixture

registry = registry_fixture()


def make_model(root: Path, big: int = 3 << 20) -> Path:
    (root / "tokenizer").mkdir(parents=True)
    (root / "model-00001-of-00002.safetensors").write_bytes(os.urandom(big))
    (root / "model-00002-of-00002.safetensors").write_bytes(os.urandom(big // 2))
    (root / "config.json").write_text(json.dumps({"architectures": ["Phi3ForCausalLM"], "hidden_size": 64}))
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    (root / "README.md").write_text("# tiny\n")
    (root / "empty.txt").write_bytes(b"")
    return root


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != artifacts.MARKER
    }


def test_round_trip_is_byte_identical_and_manifest_is_per_file(registry, tmp_path):
    model = make_model(tmp_path / "model")
    ref = registry.ref("models/tiny", "v1")
    digest = artifacts.push(model, ref, artifact_type="model")

    result = artifacts.pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert result.digest == digest
    assert tree(tmp_path / "out") == tree(model)
    assert artifacts.is_complete(tmp_path / "out")

    # The manifest: artifactType, one layer per file with a title and a per-file media type.
    manifest = httpx.get(
        f"{registry.url}/v2/models/tiny/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    ).json()
    assert manifest["artifactType"] == artifacts.MODEL_ARTIFACT_TYPE
    titles = {layer["annotations"]["org.opencontainers.image.title"]: layer["mediaType"] for layer in manifest["layers"]}
    assert set(titles) == set(tree(model))
    assert titles["model-00001-of-00002.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert titles["config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert titles["README.md"] == "application/vnd.cncf.model.doc.v1.raw"

    # A second push of the same directory uploads nothing and gives the same digest.
    with RecordingProxy(registry.host) as proxy:
        assert artifacts.push(model, proxy.ref("models/tiny", "v1"), artifact_type="model") == digest
        assert not [r for r in proxy.requests if r[0] in ("POST", "PATCH")]
        assert sum(1 for r in proxy.requests if r[0] == "HEAD") == len(titles) + 1  # + the empty config


def test_repull_and_overlapping_pull_fetch_only_missing_blobs(registry, tmp_path):
    model = make_model(tmp_path / "model")
    artifacts.push(model, registry.ref("models/overlap", "a"))
    cache = tmp_path / "cache"
    with RecordingProxy(registry.host) as proxy:
        first = artifacts.pull(proxy.ref("models/overlap", "a"), tmp_path / "one", cache_dir=cache)
        assert len(proxy.blob_gets()) == 6 and first.blobs_fetched == 6
        proxy.requests.clear()

        second = artifacts.pull(proxy.ref("models/overlap", "a"), tmp_path / "two", cache_dir=cache)
        assert proxy.blob_gets() == []
        assert second.fetched_bytes == 0 and second.blobs_fetched == 0
        assert tree(tmp_path / "two") == tree(model)

        # An artifact sharing the weights but with a new config fetches only the config.
        (model / "config.json").write_text('{"architectures": ["Phi3ForCausalLM"], "hidden_size": 128}')
        artifacts.push(model, registry.ref("models/overlap", "b"))
        proxy.requests.clear()
        third = artifacts.pull(proxy.ref("models/overlap", "b"), tmp_path / "three", cache_dir=cache)
        assert len(proxy.blob_gets()) == 1 and "/blobs/sha256:" in proxy.blob_gets()[0][1]
        assert third.blobs_fetched == 1
        assert tree(tmp_path / "three") == tree(model)

        # resolve() by digest with a warm cache needs no request at all.
        proxy.requests.clear()
        by_digest = f"{proxy.host}/models/overlap@{third.digest}"
        path = artifacts.resolve(by_digest, cache_dir=cache)
        assert proxy.requests == [] and tree(path) == tree(model)


def _biggest_blob(model: Path) -> tuple[str, int]:
    path = max(model.iterdir(), key=lambda p: p.stat().st_size if p.is_file() else 0)
    data = path.read_bytes()
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def test_interrupted_pull_resumes_with_a_range_request(registry, tmp_path):
    model = make_model(tmp_path / "model", big=4 << 20)
    artifacts.push(model, registry.ref("models/resume", "v1"))
    digest, size = _biggest_blob(model)
    cache, dest = tmp_path / "cache", tmp_path / "out"
    with RecordingProxy(registry.host) as proxy:
        proxy.cut_after(digest, 1_000_000)
        with pytest.raises(RegistryError, match="download of blob"):
            artifacts.pull(proxy.ref("models/resume", "v1"), dest, cache_dir=cache, retries=0)
        assert not dest.exists()  # nothing that looks like a model
        assert not list((cache / "snapshots" / "sha256").iterdir())
        partial = cache / "partial" / "sha256" / digest.split(":")[1]
        assert 0 < partial.stat().st_size <= 1_000_000

        have = partial.stat().st_size
        proxy.requests.clear()
        artifacts.pull(proxy.ref("models/resume", "v1"), dest, cache_dir=cache, retries=0)
        gets = [r for r in proxy.blob_gets() if digest in r[1]]
        assert [r[2] for r in gets] == [f"bytes={have}-"]
        assert tree(dest) == tree(model)
        assert not partial.exists()

    # Within one pull, a cut connection is retried from where it stopped.
    with RecordingProxy(registry.host) as proxy:
        proxy.cut_after(digest, 2_000_000)
        artifacts.pull(proxy.ref("models/resume", "v1"), tmp_path / "again", cache_dir=tmp_path / "cache2", retries=2)
        ranges = [r[2] for r in proxy.blob_gets() if digest in r[1]]
        assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
        assert int(ranges[1][6:-1]) > 0
        assert tree(tmp_path / "again") == tree(model)


def test_corrupted_blob_is_detected_and_nothing_looks_complete(registry, tmp_path):
    model = make_model(tmp_path / "model")
    artifacts.push(model, registry.ref("models/corrupt", "v1"))
    digest, size = _biggest_blob(model)
    stored = registry.blob_path(digest)
    data = bytearray(stored.read_bytes())
    data[size // 2] ^= 0xFF  # same size, one flipped byte
    stored.write_bytes(bytes(data))
    cache, dest = tmp_path / "cache", tmp_path / "out"
    with pytest.raises(DigestMismatch, match=digest):
        artifacts.pull(registry.ref("models/corrupt", "v1"), dest, cache_dir=cache)
    assert not dest.exists()
    assert not (cache / "blobs" / "sha256" / digest.split(":")[1]).exists()
    assert not (cache / "partial" / "sha256" / digest.split(":")[1]).exists()
    assert not list((cache / "snapshots" / "sha256").iterdir())
    assert not [p for p in tmp_path.iterdir() if ".kaito-tmp-" in p.name]


def test_missing_tag_is_a_clear_not_found(registry, tmp_path):
    artifacts.push(make_model(tmp_path / "model"), registry.ref("models/present", "v1"))
    ref = registry.ref("models/present", "nope")
    with pytest.raises(NotFound) as err:
        artifacts.pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert "not found" in str(err.value) and f"{registry.host}/models/present:nope" in str(err.value)
    assert not (tmp_path / "out").exists()

    # The CLI: exit 1, one line naming the reference, no traceback.
    env = dict(os.environ, KAITO_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "kaito_cli", "pull", ref, str(tmp_path / "cli-out")],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kaito pull: error: not found:") and "models/present:nope" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_push_then_pull_round_trip(registry, tmp_path):
    model = make_model(tmp_path / "model")
    env = dict(os.environ, KAITO_CACHE_DIR=str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[3]
    bare = f"{registry.host}/adapters/cli:0.0.1"  # no scheme, as KAITO adapter specs write it
    push = subprocess.run([sys.executable, "-m", "kaito_cli", "push", str(model), bare, "-q"], capture_output=True, text=True, env=env, cwd=root)
    assert push.returncode == 0, push.stderr
    assert push.stdout.strip().startswith("sha256:")
    pull = subprocess.run([sys.executable, "-m", "kaito_cli", "pull", bare, str(tmp_path / "out"), "-q"], capture_output=True, text=True, env=env, cwd=root)
    assert pull.returncode == 0, pull.stderr
    assert pull.stdout.split()[-1] == push.stdout.strip()
    assert tree(tmp_path / "out") == tree(model)


def test_bearer_token_challenge_end_to_end(registry, tmp_path, caplog):
    """A token-auth front (Bearer challenge, token from the realm with Basic credentials) over the real registry."""
    import base64
    import logging

    model = make_model(tmp_path / "model")
    artifacts.push(model, registry.ref("models/bearer", "v1"))
    secret = "b3arer-pass-never-logged"
    with RecordingProxy(registry.host, bearer={"robot": secret}) as gate:
        config = tmp_path / "docker" / "config.json"
        config.parent.mkdir()
        config.write_text(json.dumps({"auths": {gate.host: {"username": "robot", "password": secret}}}))
        with caplog.at_level(logging.DEBUG):
            result = artifacts.pull(gate.ref("models/bearer", "v1"), tmp_path / "out", cache_dir=tmp_path / "cache", docker_config=config)
        assert tree(tmp_path / "out") == tree(model)
        token_requests = [r for r in gate.requests if r[1].startswith("/token")]
        assert len(token_requests) == 1  # one token, then sent up front on every blob request
        assert "scope=repository%3Amodels%2Fbearer%3Apull" in token_requests[0][1]
        assert result.blobs_fetched == 6
        assert secret not in caplog.text and base64.b64encode(f"robot:{secret}".encode()).decode() not in caplog.text
        assert RecordingProxy.TOKEN not in caplog.text

        config.write_text(json.dumps({"auths": {gate.host: {"username": "robot", "password": "wrong-" + secret}}}))
        with pytest.raises(artifacts.Unauthorized, match="refused") as err:
            artifacts.pull(gate.ref("models/bearer", "v1"), tmp_path / "out2", cache_dir=tmp_path / "cache2", docker_config=config)
        assert secret not in str(err.value)


def test_killed_pull_leaves_nothing_that_looks_complete_and_resumes(registry, tmp_path):
    """SIGKILL a `kaito pull` process mid-download, then pull again: resume with Range, correct files."""
    import signal
    import time

    model = make_model(tmp_path / "model", big=4 << 20)
    artifacts.push(model, registry.ref("models/killed", "v1"))
    digest, _ = _biggest_blob(model)
    cache, dest = tmp_path / "cache", tmp_path / "out"
    partial = cache / "partial" / "sha256" / digest.split(":")[1]
    root = Path(__file__).resolve().parents[3]
    with RecordingProxy(registry.host) as proxy:
        proxy.stall_after(digest, 1_500_000)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kaito_cli", "pull", proxy.ref("models/killed", "v1"), str(dest), "-q"],
            cwd=root, env=dict(os.environ, KAITO_CACHE_DIR=str(cache)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size >= 1 << 20):
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        have = partial.stat().st_size  # whole read buffers (1 MiB) reach the disk
        assert (1 << 20) <= have <= 1_500_000
        assert not dest.exists()
        assert not list(tmp_path.rglob(artifacts.MARKER))  # no tree anywhere claims to be complete

        proxy.requests.clear()
        artifacts.pull(proxy.ref("models/killed", "v1"), dest, cache_dir=cache)
        assert [r[2] for r in proxy.blob_gets() if digest in r[1]] == [f"bytes={have}-"]
    assert tree(dest) == tree(model) and artifacts.is_complete(dest)


def test_cached_tag_still_resolves_when_the_registry_is_unreachable(registry, tmp_path, caplog):
    model = make_model(tmp_path / "model")
    artifacts.push(model, registry.ref("models/offline", "v1"))
    cache = tmp_path / "cache"
    with RecordingProxy(registry.host) as proxy:
        ref = proxy.ref("models/offline", "v1")
        first = artifacts.pull(ref, tmp_path / "one", cache_dir=cache)
    os.environ["KAITO_INSECURE_REGISTRIES"] += "," + ref.split("/")[2]  # the proxy is gone: connection refused
    try:
        second = artifacts.pull(ref, tmp_path / "two", cache_dir=cache)
    finally:
        os.environ["KAITO_INSECURE_REGISTRIES"] = os.environ["KAITO_INSECURE_REGISTRIES"].rsplit(",", 1)[0]
    assert second.digest == first.digest and tree(tmp_path / "two") == tree(model)
    assert "registry unreachable" in caplog.text
    with pytest.raises(RegistryError, match="cannot reach registry"):
        artifacts.pull(ref.replace(":v1", ":v2"), tmp_path / "three", cache_dir=cache, insecure=True)


def test_stale_partial_file_is_discarded_and_fetched_again(registry, tmp_path):
    model = make_model(tmp_path / "model")
    artifacts.push(model, registry.ref("models/stale", "v1"))
    digest, _ = _biggest_blob(model)
    partial = tmp_path / "cache" / "partial" / "sha256" / digest.split(":")[1]
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage from another life" * 100)
    with RecordingProxy(registry.host) as proxy:
        artifacts.pull(proxy.ref("models/stale", "v1"), tmp_path / "out", cache_dir=tmp_path / "cache", retries=0)
        assert [r[2] for r in proxy.blob_gets() if digest in r[1]] == ["bytes=2500-", None]
    assert tree(tmp_path / "out") == tree(model)
