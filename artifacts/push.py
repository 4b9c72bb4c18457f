"""Push a directory as an OCI artifact: one layer per file, blobs the registry has are skipped."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator


from . import manifest as mf
from .errors import ArtifactError, InvalidReference, NotFound
from .fs import list_files
from .progress import Progress, human_bytes
from .reference import OciReference, parse_oci
from .registry import RegistryClient

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ARTIFACT_TYPES = {"adapter": mf.ADAPTER_ARTIFACT_TYPE, "model": mf.MODEL_ARTIFACT_TYPE}


def artifact_type_for(value: str) -> str:
    """`adapter`, `model`, or a full media type (`type/subtype...`)."""
    if value in ARTIFACT_TYPES:
        return ARTIFACT_TYPES[value]
    if "/" in value and " " not in value:
        return value
    raise ArtifactError(f"invalid artifact type {value!r}; accepted: adapter, model, or a media type like application/vnd.example.v1")


def _digest_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 4):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _reader(path: Path, progress: Progress):
    def gen() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                progress.add(len(chunk))
                yield chunk

    return gen


def describe_directory(directory: Path, jobs: int = 4) -> list[tuple[str, mf.Descriptor]]:
    files = list_files(directory)
    if not files:
        raise ArtifactError(f"nothing to push: {directory} holds no files")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        sums = list(pool.map(lambda rel: _digest_file(directory / rel), files))
    return [
        (rel, mf.Descriptor(media_type=mf.file_media_type(rel), digest=digest, size=size, annotations={mf.TITLE: rel}))
        for rel, (digest, size) in zip(files, sums)
    ]


def push(
    directory: str | os.PathLike,
    ref: str | OciReference,
    *,
    docker_config: str | os.PathLike | None = None,
    insecure: bool | None = None,
    artifact_type: str = mf.ADAPTER_ARTIFACT_TYPE,
    annotations: dict[str, str] | None = None,
    jobs: int = 4,
) -> str:
    """Push every file under `directory` to `ref`; returns the manifest digest (sha256:...)."""
    started = time.monotonic()
    root = Path(directory)
    if not root.is_dir():
        raise NotFound(f"not found: directory {root} to push")
    oci = parse_oci(ref) if isinstance(ref, str) else ref
    if oci.tag is None and oci.digest is None:
        raise InvalidReference(f"{oci}: give a tag to push to (REGISTRY/REPO:TAG)")
    kind = artifact_type_for(artifact_type)
    entries = describe_directory(root, jobs)
    layers = [desc for _, desc in entries]
    by_digest = {desc.digest: (rel, desc) for rel, desc in entries}
    body = mf.build_artifact_manifest(layers, kind, annotations)
    digest = mf.digest_of(body)
    if oci.digest and oci.digest != digest:
        raise InvalidReference(f"{oci}: the directory's manifest digest is {digest}; push by tag instead")

    with RegistryClient(oci, docker_config=docker_config, insecure=insecure, push=True, max_connections=jobs + 2) as client:
        total = sum(desc.size for _, desc in by_digest.values())
        progress = Progress(f"push {oci}", total, log)

        def upload(item: tuple[str, tuple[str, mf.Descriptor]]) -> bool:
            blob_digest, (rel, desc) = item
            if client.has_blob(blob_digest):
                progress.add(desc.size, fetched=False)
                return False
            client.upload_blob(blob_digest, desc.size, _reader(root / rel, progress))
            return True

        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kaito-push") as pool:
            uploaded = list(pool.map(upload, sorted(by_digest.items(), key=lambda kv: -kv[1][1].size)))
        empty = mf.digest_of(mf.EMPTY_CONFIG)
        if not client.has_blob(empty):
            client.upload_blob(empty, len(mf.EMPTY_CONFIG), lambda: mf.EMPTY_CONFIG)
        client.put_manifest(oci.tag or digest, body, mf.OCI_MANIFEST)
        progress.finish()
    log.info(
        "pushed %s (%s): %d files, %s uploaded, %d blobs already present, %.2fs",
        oci, digest[:19], len(entries), human_bytes(progress.fetched), uploaded.count(False), time.monotonic() - started,
    )
    return digest
