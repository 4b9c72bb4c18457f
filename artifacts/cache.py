"""The node-local content-addressed cache.

Layout under the root (env KAITO_CACHE_DIR, else ~/.cache/kaito):
  blobs/sha256/<hex>        verified blobs, read-only; shared by every artifact that holds them
  partial/sha256/<hex>      bytes of an interrupted download, resumed with a Range request
  locks/<hex>.lock          one writer per blob across threads and processes (flock)
  snapshots/sha256/<hex>/   an OCI manifest's files, hardlinked from blobs (or unpacked from image layers)
  hf/<org>--<repo>/<sha>/   a Hugging Face repo at a commit
  refs/<sha256 of ref>      the manifest digest a tag last resolved to (offline fallback)
  tmp/                      trees being built; renamed into place only when complete

A tree is complete only when it carries the marker file (see fs.MARKER). Deleting the whole
cache while no pull runs is always safe.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from contract.paths import CACHE_DIR_ENV

from .errors import DestinationError

MODE_BLOB = 0o444
log = logging.getLogger(__name__)


def default_cache_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(CACHE_DIR_ENV) or "~/.cache/kaito").expanduser()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise ValueError(f"unsupported digest {digest!r}")
    return hexpart


_SUBDIRS = ("blobs/sha256", "partial/sha256", "locks", "snapshots/sha256", "hf", "refs", "tmp")


class Cache:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        explicit = root is not None or bool(os.environ.get(CACHE_DIR_ENV))
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        try:
            self._create()
        except OSError as exc:
            if explicit:
                raise DestinationError(f"cannot create the cache directory {self.root}: {exc.strerror}") from exc
            # A container user without a writable HOME: still work, just without a lasting cache.
            fallback = Path(tempfile.gettempdir()) / f"kaito-cache-{os.getuid()}"
            log.warning("cache directory %s is not writable (%s); using %s (set KAITO_CACHE_DIR)", self.root, exc.strerror, fallback)
            self.root = fallback
            self._create()

    def _create(self) -> None:
        for sub in _SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _ref_path(self, ref: str) -> Path:
        return self.root / "refs" / hashlib.sha256(ref.encode()).hexdigest()

    def remember_ref(self, ref: str, digest: str) -> None:
        path = self._ref_path(ref)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, path)

    def recall_ref(self, ref: str) -> str | None:
        try:
            return self._ref_path(ref).read_text().strip() or None
        except OSError:
            return None

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def partial_path(self, digest: str) -> Path:
        return self.root / "partial" / "sha256" / _hex(digest)

    def snapshot_path(self, manifest_digest: str) -> Path:
        return self.root / "snapshots" / "sha256" / _hex(manifest_digest)

    def hf_path(self, repo_id: str, commit: str) -> Path:
        return self.root / "hf" / repo_id.replace("/", "--") / commit

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except OSError:
            return False
        return size is None or st.st_size == size

    def commit_blob(self, src: Path, digest: str) -> Path:
        """Move a verified file into the store (atomic rename within the cache filesystem)."""
        final = self.blob_path(digest)
        os.chmod(src, MODE_BLOB)
        os.replace(src, final)
        return final

    def adopt_blob(self, path: Path, digest: str) -> None:
        """Hardlink an already verified file (e.g. from a hub download) into the store; best effort."""
        final = self.blob_path(digest)
        if final.exists():
            return
        tmp = final.with_name(final.name + f".adopt-{os.getpid()}")
        try:
            os.link(path, tmp)
            os.replace(tmp, final)
        except OSError:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        path = self.root / "locks" / f"{_hex(digest)}.lock"
        with open(path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
