"""Atomic placement of directory trees.

A tree is built in a hidden sibling temp dir, gets the completion marker last, and is renamed onto
the destination. A crash leaves only a `.NAME.kaito-tmp-*` sibling, never a destination that looks
complete. Readers (the serving loader) check `is_complete(dir)`.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .errors import DestinationError

log = logging.getLogger(__name__)

MARKER = ".kaito-complete"


def is_complete(directory: str | os.PathLike) -> bool:
    return (Path(directory) / MARKER).is_file()


def read_marker(directory: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def durable() -> bool:
    """KAITO_FSYNC=1: fsync blobs and markers before they count (survives power loss, costs disk time).
    Without it, placement is still atomic against process crashes and kills."""
    return os.environ.get("KAITO_FSYNC", "").lower() in ("1", "true", "yes")


def write_marker(directory: Path, info: dict) -> None:
    with open(directory / MARKER, "w") as fh:
        fh.write(json.dumps(info, sort_keys=True) + "\n")
        if durable():
            fh.flush()
            os.fsync(fh.fileno())


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of regular files (symlinks to files followed), marker and .cache/.git excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir == "." and d in (".cache", ".git")))
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel == MARKER or name.startswith(".kaito-tmp"):
                continue
            if os.path.isfile(os.path.join(dirpath, name)):
                out.append(rel)
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Hardlink (no extra disk, instant); copy when across filesystems or links are refused."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)


def link_tree(src: Path, dst: Path, copy: bool = False) -> list[str]:
    """Hardlink (cache trees: read-only blobs) or copy (a user's own directory) every file."""
    files = list_files(src)
    for rel in files:
        if copy:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst / rel)
        else:
            link_or_copy((src / rel).resolve(), dst / rel)
    return files


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def place_tree(dest: Path, build: Callable[[Path], None], marker: dict, tmp_parent: Path | None = None) -> Path:
    """Build a tree with `build(tmpdir)` and put it at `dest` atomically, marker written last."""
    dest = Path(dest)
    parent = tmp_parent or dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.kaito-tmp-", dir=parent))
    except OSError as exc:
        raise DestinationError(f"cannot write under {parent}: {exc.strerror}") from exc
    try:
        build(tmp)
        write_marker(tmp, marker)
        _swap_into(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise
    return dest


def _swap_into(tmp: Path, dest: Path) -> None:
    if not dest.exists() and not dest.is_symlink():
        try:
            os.rename(tmp, dest)
            return
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                dest.mkdir()  # another filesystem: fill it below, marker last
            elif exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise DestinationError(f"cannot place files at {dest}: {exc.strerror}") from exc
            elif is_complete(dest):  # another process finished the same tree first
                _remove(tmp)
                return
    if not dest.is_dir():
        raise DestinationError(f"destination {dest} exists and is not a directory")
    entries = [p for p in dest.iterdir()]
    if entries and not is_complete(dest):
        raise DestinationError(f"destination {dest} is not empty and was not written by kaito; empty it or choose another directory")
    if not entries:
        try:
            dest.rmdir()
            os.rename(tmp, dest)
            return
        except OSError:
            pass  # a mount point (e.g. an emptyDir volume): fill it in place below
    else:
        # Replace our own earlier tree: retire it first, so the destination is never half old, half new.
        old = dest.with_name(f".{dest.name}.kaito-old-{os.getpid()}")
        try:
            os.rename(dest, old)
            os.rename(tmp, dest)
            _remove(old)
            return
        except OSError:
            if old.exists() and not dest.exists():
                os.rename(old, dest)
        (dest / MARKER).unlink(missing_ok=True)
        for entry in dest.iterdir():
            (_remove(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink())
    # In-place fill of a directory we cannot replace (a mount point): the marker moves last.
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == MARKER):
        shutil.move(str(entry), str(dest / entry.name))
    _remove(tmp)
