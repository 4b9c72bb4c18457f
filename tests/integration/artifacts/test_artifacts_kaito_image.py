"""KAITO adapter images: an ordinary container image (Docker v2 manifest behind an OCI index, gzip tar
layers, a busybox-like base layer) holding /data/adapter_config.json and /data/adapter_model.safetensors,
built here byte by byte and pushed raw to the registry, then pulled with our library: the files under
/data land at the destination root, nothing else does."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx

import artifacts
from tests.support.registry import registry_fixture

registry = registry_fixture()

ADAPTER_CONFIG = json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["qkv_proj"]}).encode()
ADAPTER_WEIGHTS = os.urandom(300_000)


def _tar_gz(entries: list[tuple[str, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(base: str, data: bytes) -> dict:
    digest = _digest(data)
    start = httpx.post(f"{base}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = httpx.URL(base).join(start.headers["location"])
    done = httpx.put(location.copy_merge_params({"digest": digest}), content=data, headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def _put_manifest(base: str, reference: str, body: dict, media_type: str) -> dict:
    data = json.dumps(body).encode()
    resp = httpx.put(f"{base}/manifests/{reference}", content=data, headers={"Content-Type": media_type})
    assert resp.status_code == 201, resp.text
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def push_kaito_image(registry, repository: str, tag: str) -> None:
    base = f"{registry.url}/v2/{repository}"
    busybox = _tar_gz([("bin/", None), ("bin/busybox", b"\x7fELF not really"), ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")])
    data = _tar_gz([
        ("data/", None),
        ("data/adapter_config.json", ADAPTER_CONFIG),
        ("data/adapter_model.safetensors", ADAPTER_WEIGHTS),
        ("data/stale.bin", b"removed by the next layer"),
    ])
    whiteout = _tar_gz([("data/.wh.stale.bin", b"")])
    layers = [busybox, data, whiteout]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer)) for layer in layers]},
    }).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **_put_blob(base, config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **_put_blob(base, layer)} for layer in layers],
    }
    image = _put_manifest(base, f"{tag}-amd64", manifest, manifest["mediaType"])
    # A buildx-style attestation manifest next to it, which must never be picked.
    attestation_layer = _put_blob(base, b'{"predicateType": "https://slsa.dev/provenance/v0.2"}')
    attestation = _put_manifest(base, f"{tag}-att", {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_put_blob(base, b"{}")},
        "layers": [{"mediaType": "application/vnd.in-toto+json", **attestation_layer}],
    }, "application/vnd.oci.image.manifest.v1+json")
    _put_manifest(base, tag, {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {**attestation, "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": image["digest"]}},
            {**image, "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }, "application/vnd.oci.image.index.v1+json")


def test_kaito_adapter_image_is_extracted_at_the_root(registry, tmp_path):
    push_kaito_image(registry, "kaito/phi-3-adapter", "0.0.1")
    bare = f"{registry.host}/kaito/phi-3-adapter:0.0.1"  # as a KAITO adapter spec writes it: no scheme
    dest = artifacts.resolve(bare, dest=tmp_path / "mnt" / "adapter" / "phi-3-adapter", cache_dir=tmp_path / "cache")
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [artifacts.MARKER, "adapter_config.json", "adapter_model.safetensors"]
    assert (dest / "adapter_config.json").read_bytes() == ADAPTER_CONFIG
    assert (dest / "adapter_model.safetensors").read_bytes() == ADAPTER_WEIGHTS


def test_init_container_command_pulls_a_kaito_image(registry, tmp_path):
    push_kaito_image(registry, "kaito/cli-adapter", "0.0.2")
    dest = tmp_path / "mnt" / "adapter" / "cli-adapter"
    dest.mkdir(parents=True)  # an existing empty directory (e.g. a volume mount) is fine
    proc = subprocess.run(
        [sys.executable, "-m", "kaito_cli", "pull", f"{registry.host}/kaito/cli-adapter:0.0.2", str(dest)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3],
        env=dict(os.environ, KAITO_CACHE_DIR=str(tmp_path / "cache")),
    )
    assert proc.returncode == 0, proc.stderr
    assert (dest / "adapter_model.safetensors").read_bytes() == ADAPTER_WEIGHTS
    assert "pull " in proc.stderr  # progress and summary go to the log (stderr)


def test_our_adapter_artifact_reads_back_the_same_way(registry, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_bytes(ADAPTER_CONFIG)
    (adapter / "adapter_model.safetensors").write_bytes(ADAPTER_WEIGHTS)
    ref = registry.ref("kaito/tuned-adapter", "0.0.1")
    artifacts.push(adapter, ref)
    dest = artifacts.resolve(ref, dest=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in dest.iterdir()) == sorted([artifacts.MARKER, "adapter_config.json", "adapter_model.safetensors"])
    assert (dest / "adapter_model.safetensors").read_bytes() == ADAPTER_WEIGHTS
