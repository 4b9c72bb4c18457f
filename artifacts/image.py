"""Unpacking container image layers (KAITO adapter images) into a directory.

KAITO adapter images (`FROM busybox` or `FROM scratch`, files in `/data`) hold
`/data/adapter_config.json` and `/data/adapter_model.safetensors`. Layers are applied in order,
honouring whiteouts; only entries under `data/` are kept, and they land at the destination root.
Entries that would escape the destination (absolute, `..`, links pointing outside) are skipped.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
from pathlib import Path

from .errors import UnsupportedArtifact
from .manifest import safe_relpath

log = logging.getLogger(__name__)

IMAGE_DATA_ROOT = "data"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def _open_tar(path: Path) -> tarfile.TarFile:
    with open(path, "rb") as fh:
        if fh.read(4) == _ZSTD_MAGIC:
            raise UnsupportedArtifact("zstd-compressed image layers are not supported; push the image with gzip layers")
    try:
        return tarfile.open(path, mode="r:*")
    except tarfile.TarError as exc:
        raise UnsupportedArtifact(f"an image layer is not a tar archive: {exc}") from exc


def _under_root(name: str, root: str) -> str | None:
    """Path relative to root, '' for the root itself, None when outside it."""
    if not root:
        return name
    if name == root:
        return ""
    if name.startswith(root + "/"):
        return name[len(root) + 1:]
    return None


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply_layer(layer: Path, out: Path, root: str = IMAGE_DATA_ROOT) -> int:
    """Apply one tar layer onto `out`; returns the number of files written."""
    written = 0
    with _open_tar(layer) as tar:
        for member in tar:
            name = safe_relpath(member.name)
            if name is None:
                log.warning("skipping unsafe layer entry %r", member.name)
                continue
            rel = _under_root(name, root)
            if rel is None:
                continue
            base = posixpath.basename(rel)
            if base.startswith(_WHITEOUT):
                parent = out / posixpath.dirname(rel)
                if base == _OPAQUE:
                    if parent.is_dir():
                        for child in parent.iterdir():
                            _clear(child)
                else:
                    _clear(parent / base[len(_WHITEOUT):])
                continue
            if rel == "":
                continue
            target = out / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _clear(target)
            if member.isreg():
                src = tar.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                written += 1
            elif member.islnk():
                link = safe_relpath(member.linkname)
                link_rel = _under_root(link, root) if link else None
                if link_rel and (out / link_rel).is_file():
                    shutil.copyfile(out / link_rel, target)
                    written += 1
                else:
                    log.warning("skipping hard link %r to outside the extracted tree", member.name)
            elif member.issym():
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
                if member.linkname.startswith("/") or resolved == ".." or resolved.startswith("../"):
                    log.warning("skipping symlink %r that points outside the extracted tree", member.name)
                    continue
                os.symlink(member.linkname, target)
            else:
                log.warning("skipping special file %r in image layer", member.name)
    return written


def extract_image(layers: list[Path], out: Path, root: str = IMAGE_DATA_ROOT) -> int:
    written = sum(apply_layer(layer, out, root) for layer in layers)
    if written == 0:
        raise UnsupportedArtifact(
            f"the image has no files under /{root}; KAITO adapter images keep adapter_config.json and "
            f"adapter_model.safetensors in /{root}"
        )
    return written
