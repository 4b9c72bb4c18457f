"""Pull an OCI artifact or image into the cache and (optionally) a destination directory.

Blobs are fetched in parallel (bounded), streamed to `cache/partial/` while hashed, verified, and
only then renamed into the blob store. An interrupted blob resumes with a Range request (within a
pull, on retry, and across runs). A manifest's files are assembled once into a snapshot (hardlinks
from the blob store, or image layers unpacked), then linked into the destination, both atomically.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import manifest as mf
from .cache import Cache
from .errors import ArtifactError, DigestMismatch, RegistryError, UnsupportedArtifact
from .fs import durable, is_complete, link_or_copy, link_tree, list_files, place_tree, read_marker
from .image import apply_layer, extract_image
from .progress import Progress, human_bytes
from .reference import OciReference, parse_oci
from .registry import RegistryClient

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Enough streams to hide network latency, few enough that 2-core nodes do not thrash
# (measured on 2 cores: 4 streams beat 2 and 8 on loopback).
DEFAULT_JOBS = max(4, min(8, 2 * (os.cpu_count() or 2)))
ORAS_UNPACK = "io.deis.oras.content.unpack"


@dataclass
class PullResult:
    path: Path                      # the directory holding the files
    reference: str                  # what was asked for
    digest: str                     # the image/artifact manifest digest
    files: list[str] = field(default_factory=list)
    total_bytes: int = 0            # sum of layer sizes
    fetched_bytes: int = 0          # bytes that came over the network
    blobs_fetched: int = 0
    blobs_cached: int = 0
    seconds: float = 0.0


def _jobs(jobs: int | None) -> int:
    if jobs:
        return max(1, int(jobs))
    return int(os.environ.get("KAITO_PULL_JOBS", DEFAULT_JOBS))


def _hash_prefix(path: Path, length: int) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = length
        while remaining:
            chunk = fh.read(min(CHUNK * 4, remaining))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
    return h


class _Aborted(Exception):
    """Another blob of the same pull failed (or the user interrupted): stop at the next chunk."""


def _download_once(client: RegistryClient, desc: mf.Descriptor, part: Path, progress: Progress, count_prefix: bool, abort: threading.Event) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > desc.size:
        part.unlink()
        have = 0
    h = _hash_prefix(part, have) if have else hashlib.sha256()
    if have:
        log.info("resuming %s at %s of %s", desc.digest[:19], human_bytes(have), human_bytes(desc.size))
        if count_prefix:  # bytes from an earlier run; this run's own bytes were counted as they came
            progress.add(have, fetched=False)
    if have < desc.size or desc.size == 0:
        with client.open_blob(desc.digest, offset=have) as (resp, start):
            if start != have:  # the registry ignored the range: start over
                progress.add(-have, fetched=False)
                have, h = 0, hashlib.sha256()
            with open(part, "r+b" if part.exists() else "wb", buffering=0) as out:
                out.seek(have)
                out.truncate()
                buf = memoryview(bytearray(CHUNK))
                while have < desc.size:
                    if abort.is_set():
                        raise _Aborted()
                    try:
                        n = resp.readinto(buf)
                    except (OSError, http.client.HTTPException) as exc:
                        raise RegistryError(f"connection lost after {have} of {desc.size} bytes ({type(exc).__name__})") from exc
                    if not n:
                        raise RegistryError(f"connection closed after {have} of {desc.size} bytes")
                    chunk = buf[:n]
                    h.update(chunk)
                    while chunk:
                        chunk = chunk[out.write(chunk):]
                    have += n
                    progress.add(n)
                if durable():
                    os.fsync(out.fileno())
    if have != desc.size or "sha256:" + h.hexdigest() != desc.digest:
        part.unlink(missing_ok=True)
        raise DigestMismatch(
            f"digest mismatch for blob {desc.digest} of {client.ref}: got {have} bytes hashing to sha256:{h.hexdigest()}, "
            f"expected {desc.size} bytes; the download was discarded"
        )


def fetch_blob(
    client: RegistryClient, cache: Cache, desc: mf.Descriptor, progress: Progress, retries: int = 3, abort: threading.Event | None = None
) -> bool:
    """Make sure a verified blob is in the cache. Returns True when bytes were fetched."""
    abort = abort or threading.Event()
    if cache.has_blob(desc.digest, desc.size):
        progress.add(desc.size, fetched=False)
        return False
    with cache.lock(desc.digest):
        if cache.has_blob(desc.digest, desc.size):  # another process got it while we waited
            progress.add(desc.size, fetched=False)
            return False
        part = cache.partial_path(desc.digest)
        attempt, first, clean_retry_used = 0, True, False
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _download_once(client, desc, part, progress, count_prefix=first, abort=abort)
                break
            except DigestMismatch:
                if before and not clean_retry_used:
                    clean_retry_used = True  # the partial file may be stale (another version, a bad disk): once from zero
                    log.warning("resumed download of %s did not verify; fetching it again from the start", desc.digest[:19])
                    continue
                raise
            except (httpx.HTTPError, RegistryError) as exc:
                status = getattr(exc, "status", None)
                if abort.is_set() or attempt >= retries or (status is not None and 400 <= status < 500 and status not in (408, 429)):
                    raise RegistryError(f"download of blob {desc.digest} from {client.ref} failed: {exc}") from exc
                delay = min(0.5 * 2**attempt, 8.0)
                attempt += 1
                log.warning("download of %s interrupted (%s); resuming in %.1fs", desc.digest[:19], exc, delay)
                abort.wait(delay)
            finally:
                first = False
        cache.commit_blob(part, desc.digest)
        return True


def _fetch_all(client: RegistryClient, cache: Cache, blobs: list[mf.Descriptor], progress: Progress, retries: int, jobs: int) -> list[bool]:
    """Fetch in parallel; the first failure (or Ctrl-C) stops the other downloads at their next chunk,
    leaving their partial files for the next attempt to resume."""
    abort = threading.Event()
    with ThreadPoolExecutor(max_workers=min(jobs, max(1, len(blobs))), thread_name_prefix="kaito-pull") as pool:
        futures = [pool.submit(fetch_blob, client, cache, d, progress, retries, abort) for d in blobs]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            abort.set()
            for future in futures:
                future.cancel()
            raise
    return [future.result() for future in futures]


def _resolve_manifest(client: RegistryClient) -> tuple[mf.Manifest, str]:
    data, ctype, digest = client.get_manifest()
    parsed = mf.parse(data, ctype)
    if isinstance(parsed, mf.Index):
        chosen = mf.select_from_index(parsed)
        data, ctype, digest = client.get_manifest(chosen.digest)
        parsed = mf.parse(data, ctype)
        if isinstance(parsed, mf.Index):
            raise UnsupportedArtifact(f"{client.ref}: nested image indexes are not supported")
    return parsed, digest


def _build_snapshot(manifest: mf.Manifest, cache: Cache, out: Path) -> None:
    image_layers: list[Path] = []
    for layer in manifest.layers:
        blob = cache.blob_path(layer.digest)
        title = layer.title
        if title and mf.is_tar_layer(layer) and layer.annotations.get(ORAS_UNPACK) == "true":
            apply_layer(blob, out, root="")  # an oras directory layer: the tar holds TITLE/...
        elif title:
            rel = mf.safe_relpath(title)
            if rel is None:
                raise UnsupportedArtifact(f"layer title {title!r} would escape the destination")
            link_or_copy(blob, out / rel)
        elif mf.is_tar_layer(layer):
            image_layers.append(blob)
        else:
            log.warning("ignoring layer %s (%s) without a title", layer.digest[:19], layer.media_type)
    if image_layers:
        extract_image(image_layers, out)
    elif not any(out.iterdir()):
        raise UnsupportedArtifact("the artifact has no files (no titled layers and no image layers)")


def _pull_into_cache(oci: OciReference, cache: Cache, result: PullResult, docker_config, insecure, n: int, retries: int) -> Path:
    with RegistryClient(oci, docker_config=docker_config, insecure=insecure, max_connections=n + 2) as client:
        manifest, digest = _resolve_manifest(client)
        snapshot = cache.snapshot_path(digest)
        result.digest = digest
        result.total_bytes = sum(layer.size for layer in manifest.layers)
        unique = {layer.digest: layer for layer in manifest.layers}
        if is_complete(snapshot):
            result.blobs_cached = len(unique)
        else:
            for layer in unique.values():
                if not mf.DIGEST_RE.match(layer.digest):
                    raise UnsupportedArtifact(f"layer digest {layer.digest!r} of {oci} is not a sha256 digest")
            progress = Progress(f"pull {oci}", sum(d.size for d in unique.values()), log)
            ordered = sorted(unique.values(), key=lambda d: -d.size)  # big ones first: better balance
            outcomes = _fetch_all(client, cache, ordered, progress, retries, n)
            progress.finish()
            result.blobs_fetched = sum(outcomes)
            result.blobs_cached = len(outcomes) - result.blobs_fetched
            result.fetched_bytes = progress.fetched
            place_tree(snapshot, lambda tmp: _build_snapshot(manifest, cache, tmp), {"source": str(oci), "digest": digest}, tmp_parent=cache.tmp)
    if not oci.digest:
        cache.remember_ref(str(oci), digest)
    return snapshot


def pull(
    ref: str | OciReference,
    dest: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    docker_config: str | os.PathLike | None = None,
    insecure: bool | None = None,
    jobs: int | None = None,
    retries: int = 3,
) -> PullResult:
    """Fetch `ref` into the cache; link its files into `dest` when given. Returns a PullResult."""
    started = time.monotonic()
    oci = parse_oci(ref) if isinstance(ref, str) else ref
    cache = Cache(cache_dir)
    result = PullResult(path=Path(), reference=str(oci), digest="")

    snapshot = cache.snapshot_path(oci.digest) if oci.digest else None
    if snapshot is not None and is_complete(snapshot):
        result.digest = oci.digest  # immutable and already here: no request at all
    else:
        try:
            snapshot = _pull_into_cache(oci, cache, result, docker_config, insecure, _jobs(jobs), retries)
        except RegistryError as exc:
            # Registry unreachable before the tag resolved (not a 4xx, not mid-download): a tag this
            # node pulled before still serves from the cache, with a warning.
            unreachable = getattr(exc, "status", None) is None and not result.digest
            known = cache.recall_ref(str(oci)) if unreachable else None
            if not known or not is_complete(cache.snapshot_path(known)):
                raise
            log.warning("registry unreachable (%s); using the cached %s for %s", exc, known[:19], oci)
            snapshot, result.digest = cache.snapshot_path(known), known

    result.path = snapshot
    if dest is not None:
        result.path = materialize(snapshot, Path(dest), {"source": str(oci), "digest": result.digest})
    result.files = list_files(result.path)
    result.seconds = time.monotonic() - started
    log.info(
        "pulled %s (%s) into %s: %d files, %s fetched, %d blobs from cache, %.2fs",
        oci, result.digest[:19], result.path, len(result.files), human_bytes(result.fetched_bytes), result.blobs_cached, result.seconds,
    )
    return result


def resolve_digest(
    ref: str | OciReference,
    *,
    docker_config: str | os.PathLike | None = None,
    insecure: bool | None = None,
) -> str:
    """The manifest digest `ref` names now: one manifest request, no blobs and no cache fallback.

    For watching a tag: a caller that pins `repo:tag@digest` notices a new push by a new digest, and an
    unreachable registry is an error here (pull() would fall back to the digest this node saw last).
    """
    oci = parse_oci(ref) if isinstance(ref, str) else ref
    if oci.digest:
        return oci.digest
    with RegistryClient(oci, docker_config=docker_config, insecure=insecure, max_connections=2) as client:
        return client.get_manifest()[2]


def materialize(tree: Path, dest: Path, marker: dict, copy: bool = False) -> Path:
    """Link (or copy) a complete tree into `dest` atomically; a no-op when dest already holds it."""
    existing = read_marker(dest)
    if existing and existing.get("digest") == marker.get("digest") and marker.get("digest"):
        return dest
    place_tree(dest, lambda tmp: link_tree(tree, tmp, copy=copy), marker)
    return dest


__all__ = ["PullResult", "pull", "resolve_digest", "materialize", "fetch_blob", "ArtifactError"]
