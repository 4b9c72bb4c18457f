"""Hugging Face hub source: `hf://org/repo@revision` into the cache, verified file by file.

Uses the hub client (huggingface_hub) for the API and downloads. The endpoint is read from
HF_ENDPOINT at call time (huggingface_hub reads it only at import). The token comes from the
`hf_token` argument, else env HF_TOKEN, else the file named by HF_TOKEN_PATH; it is passed to the
client and never logged. After download every file is checked against the hub's tree listing:
LFS files by sha256, others by their git blob id (sha1 of "blob <size>\\0" + bytes). Verified LFS
files are hardlinked into the blob store, and files the store already holds are not downloaded.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from .cache import Cache
from .errors import DigestMismatch, HubError, NotFound, Unauthorized
from .fs import is_complete, link_or_copy, list_files, place_tree
from .progress import human_bytes
from .reference import HfReference

log = logging.getLogger(__name__)

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def resolve_hf_token(hf_token: str | None = None, env: dict | None = None) -> str | None:
    env = os.environ if env is None else env
    if hf_token:
        return hf_token
    if env.get("HF_TOKEN"):
        return env["HF_TOKEN"].strip()
    path = env.get("HF_TOKEN_PATH")
    if path and Path(path).expanduser().is_file():
        return Path(path).expanduser().read_text().strip() or None
    return None


def _endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def _hub_error(exc: Exception, ref: HfReference) -> Exception:
    """Map hub client errors to ours; the message is ours (status only), never the request headers."""
    from huggingface_hub import errors as hub

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hub.GatedRepoError):
        return Unauthorized(f"unauthorized: {ref} is gated; accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, hub.RevisionNotFoundError):
        return NotFound(f"not found: revision {ref.revision!r} of hf://{ref.repo_id}")
    if isinstance(exc, hub.RepositoryNotFoundError):
        return NotFound(f"not found: {ref} (the repository does not exist, or it is private and needs HF_TOKEN)")
    if isinstance(exc, hub.EntryNotFoundError):
        return NotFound(f"not found: a file of {ref}")
    if status == 404:
        return NotFound(f"not found: {ref}")
    if status in (401, 403):
        return Unauthorized(f"unauthorized: {ref}: the hub refused the token (HTTP {status})")
    if status is not None:
        return HubError(f"hub request for {ref} failed with HTTP {status}")
    return HubError(f"hub request for {ref} failed: {type(exc).__name__}")


def _git_blob_id(path: Path) -> str:
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _ignored(path: str, patterns: list[str] | None) -> bool:
    return bool(patterns) and any(fnmatch.fnmatch(path, p) for p in patterns)


def _quiet_tqdm():
    """The hub's progress bars write to the terminal; ours go to the log (summary below)."""
    from tqdm.auto import tqdm

    class QuietTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return QuietTqdm


def fetch_hf(
    ref: HfReference,
    cache: Cache,
    *,
    hf_token: str | None = None,
    ignore_patterns: list[str] | None = None,
    jobs: int = 8,
) -> Path:
    """Return the cache directory holding `ref`'s files at its commit (downloading when missing)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.hf_api import RepoFile

    def target_for(commit: str) -> Path:
        if not ignore_patterns:
            return cache.hf_path(ref.repo_id, commit)
        tag = hashlib.sha256("\0".join(sorted(ignore_patterns)).encode()).hexdigest()[:12]
        return cache.hf_path(ref.repo_id, f"{commit}.{tag}")  # a filtered tree never passes for the full one

    if _COMMIT_RE.match(ref.revision):
        cached = target_for(ref.revision)
        if is_complete(cached):
            return cached  # an immutable commit already on the node: no hub request at all
    token = resolve_hf_token(hf_token)
    endpoint = _endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        commit = api.model_info(ref.repo_id, revision=ref.revision).sha
        target = target_for(commit)
        if is_complete(target):
            return target
        tree = [f for f in api.list_repo_tree(ref.repo_id, revision=commit, recursive=True) if isinstance(f, RepoFile)]
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one of ours
        if isinstance(exc, (NotFound, Unauthorized, HubError)):
            raise
        raise _hub_error(exc, ref) from exc
    wanted = [f for f in tree if not _ignored(f.path, ignore_patterns)]
    have = [f for f in wanted if f.lfs is not None and cache.has_blob("sha256:" + f.lfs.sha256, f.size)]
    skip = list(ignore_patterns or []) + [glob.escape(f.path) for f in have]
    total = sum(f.size for f in wanted)
    started = time.monotonic()

    def build(tmp: Path) -> None:
        if len(have) < len(wanted):
            try:
                snapshot_download(
                    ref.repo_id, revision=commit, local_dir=str(tmp), token=token, endpoint=endpoint,
                    ignore_patterns=skip or None, max_workers=jobs, tqdm_class=_quiet_tqdm(),
                )
            except Exception as exc:  # noqa: BLE001
                raise _hub_error(exc, ref) from exc
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        for f in have:
            link_or_copy(cache.blob_path("sha256:" + f.lfs.sha256), tmp / f.path)
        for f in wanted:
            path = tmp / f.path
            if not path.is_file():
                raise HubError(f"{ref}: the hub client did not deliver {f.path}")
            if f.lfs is not None:
                got = _sha256(path)
                ok = got == f.lfs.sha256
                if ok:
                    cache.adopt_blob(path, "sha256:" + got)
            else:
                got = _git_blob_id(path)
                ok = got == f.blob_id
            if not ok or path.stat().st_size != f.size:
                raise DigestMismatch(f"digest mismatch for {f.path} of {ref}: the downloaded file does not match the hub's listing")
            os.chmod(path, 0o444)  # cache trees are shared through hardlinks: read-only, like blobs
        extra = set(list_files(tmp)) - {f.path for f in wanted}
        for rel in extra:  # never ship a file the listing does not vouch for
            (tmp / rel).unlink()

    place_tree(target, build, {"source": f"hf://{ref.repo_id}@{commit}", "digest": commit}, tmp_parent=cache.tmp)
    log.info("fetched %s (commit %s): %d files, %s, %.2fs", ref, commit[:12], len(wanted), human_bytes(total), time.monotonic() - started)
    return target
