"""OCI and Docker manifest media types, the artifact manifest we push, and how we read what we pull (pure).

What we push: an OCI image manifest (OCI 1.1 artifact form) with `artifactType`, the empty config
descriptor, and one layer per file. Each layer has a per-file media type (the CNCF ModelPack `*.raw`
types, so model tooling recognises weights, configs, docs and code) and an
`org.opencontainers.image.title` annotation holding the file's path relative to the artifact root.
`oras pull` of such an artifact writes the same files.

What we read: the above, or any container image (Docker v2 / OCI, optionally behind an index or
manifest list) whose tar(.gz) layers are unpacked; for images, only what is under `/data` lands at
the destination (the KAITO adapter image layout).
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field

from .errors import UnsupportedArtifact

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"

ADAPTER_ARTIFACT_TYPE = "application/vnd.kaito.adapter.v1"
MODEL_ARTIFACT_TYPE = "application/vnd.kaito.model.v1"

WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
OCTET = "application/octet-stream"

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx", ".npz")
_CONFIG_SUFFIXES = (".json", ".jinja", ".model", ".tiktoken", ".txt", ".yaml", ".yml")
_DOC_NAMES = ("readme", "license", "notice", "use_policy", "responsible_use")

# Layers whose bytes are a tar stream (gzip is detected by magic when unpacking).
_TAR_MARKERS = ("tar", "rootfs.diff")


DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_media_type(relpath: str) -> str:
    name = posixpath.basename(relpath).lower()
    if name.endswith(_WEIGHT_SUFFIXES):
        return WEIGHT
    if name.startswith(_DOC_NAMES) or name.endswith((".md", ".rst")):
        return DOC
    if name.endswith(".py"):
        return CODE
    if name.endswith(_CONFIG_SUFFIXES):
        return WEIGHT_CONFIG
    return OCTET


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, obj: dict) -> "Descriptor":
        try:
            return cls(
                media_type=obj.get("mediaType", ""),
                digest=obj["digest"],
                size=int(obj["size"]),
                annotations=dict(obj.get("annotations") or {}),
                platform=obj.get("platform"),
                artifact_type=obj.get("artifactType"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsupportedArtifact(f"malformed descriptor in manifest: {exc}") from exc

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None

    @property
    def is_file_artifact(self) -> bool:
        """Per-file layers (ours, oras): every layer has a title and is not a tar stream."""
        return bool(self.layers) and all(layer.title and not is_tar_layer(layer) for layer in self.layers)


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def is_tar_layer(desc: Descriptor) -> bool:
    return any(marker in desc.media_type for marker in _TAR_MARKERS)


def parse(data: bytes, content_type: str | None = None) -> Manifest | Index:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise UnsupportedArtifact("manifest is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise UnsupportedArtifact("manifest is not a JSON object")
    media_type = obj.get("mediaType") or (content_type or "").split(";")[0].strip()
    if obj.get("schemaVersion") == 1:
        raise UnsupportedArtifact("Docker schema 1 manifests are not supported; re-push the image with a current client")
    if media_type in INDEX_TYPES or (not media_type and "manifests" in obj):
        return Index(media_type=media_type or OCI_INDEX, manifests=tuple(Descriptor.from_json(d) for d in obj.get("manifests") or ()))
    if media_type in MANIFEST_TYPES or (not media_type and "layers" in obj):
        if "config" not in obj:
            raise UnsupportedArtifact("image manifest has no config descriptor")
        return Manifest(
            media_type=media_type or OCI_MANIFEST,
            config=Descriptor.from_json(obj["config"]),
            layers=tuple(Descriptor.from_json(d) for d in obj.get("layers") or ()),
            artifact_type=obj.get("artifactType"),
        )
    raise UnsupportedArtifact(f"unsupported manifest media type {media_type!r}; accepted: {ACCEPT}")


def select_from_index(index: Index, os_name: str = "linux", arch: str = "amd64") -> Descriptor:
    """Pick the manifest to unpack. Adapter and model data are platform-independent, so prefer
    linux/amd64, else any real platform entry, never an attestation manifest."""
    candidates = [
        d
        for d in index.manifests
        if d.annotations.get("vnd.docker.reference.type") != "attestation-manifest"
        and (d.platform or {}).get("os") != "unknown"
    ]
    if not candidates:
        raise UnsupportedArtifact("image index lists no usable manifest")
    for d in candidates:
        p = d.platform or {}
        if p.get("os") == os_name and p.get("architecture") == arch:
            return d
    return candidates[0]


def safe_relpath(name: str) -> str | None:
    """Normalise a title or tar member name; None when it would escape the destination."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    if not name or name.startswith("/") or posixpath.isabs(name):
        return None
    norm = posixpath.normpath(name)
    if norm in (".", "") or norm == ".." or norm.startswith("../"):
        return None
    return norm


def build_artifact_manifest(layers: list[Descriptor], artifact_type: str, annotations: dict[str, str] | None = None) -> bytes:
    """Deterministic bytes: the same files give the same manifest digest."""
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG_TYPE, "digest": digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG), "data": "e30="},
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(manifest, sort_keys=False, separators=(",", ":")).encode()
