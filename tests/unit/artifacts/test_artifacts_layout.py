"""Manifest reading, image-layer unpacking and atomic placement (no network)."""
import io
import json
import tarfile
from pathlib import Path

import pytest

from artifacts import MARKER, DestinationError, UnsupportedArtifact, is_complete
from artifacts import manifest as mf
from artifacts.fs import place_tree
from artifacts.image import apply_layer, extract_image


def _tar(path: Path, entries) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_image_layers_keep_only_data_and_apply_whiteouts(tmp_path):
    base = _tar(tmp_path / "base.tgz", [("bin/sh", b"elf", "file"), ("data/", None, "dir"), ("data/old/x.bin", b"x", "file")])
    top = _tar(tmp_path / "top.tgz", [
        ("data/adapter_config.json", b"{}", "file"),
        ("./data/adapter_model.safetensors", b"weights", "file"),
        ("data/old/.wh..wh..opq", b"", "file"),
        ("data/../../escape.txt", b"evil", "file"),
        ("/data/abs.txt", b"abs", "file"),
        ("data/link", "../../etc/passwd", "sym"),
    ])
    out = tmp_path / "out"
    out.mkdir()
    assert extract_image([base, top], out) == 3
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    assert not (tmp_path / "escape.txt").exists()


def test_file_whiteout_removes_an_earlier_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    apply_layer(_tar(tmp_path / "a.tgz", [("data/a.json", b"1", "file"), ("data/b.json", b"2", "file")]), out)
    apply_layer(_tar(tmp_path / "b.tgz", [("data/.wh.a.json", b"", "file")]), out)
    assert sorted(p.name for p in out.iterdir()) == ["b.json"]


def test_image_without_data_dir_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsupportedArtifact, match="no files under /data"):
        extract_image([_tar(tmp_path / "a.tgz", [("models/a.bin", b"1", "file")])], out)


def test_zstd_layers_are_refused(tmp_path):
    layer = tmp_path / "z"
    layer.write_bytes(b"\x28\xb5\x2f\xfd" + b"0" * 20)
    with pytest.raises(UnsupportedArtifact, match="zstd"):
        apply_layer(layer, tmp_path)


def test_index_selection_prefers_linux_amd64_and_skips_attestations():
    d = lambda digest, **kw: mf.Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + digest * 64, 1, **kw)
    index = mf.Index(mf.OCI_INDEX, (
        d("a", platform={"os": "unknown", "architecture": "unknown"}, annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        d("b", platform={"os": "linux", "architecture": "arm64"}),
        d("c", platform={"os": "linux", "architecture": "amd64"}),
    ))
    assert mf.select_from_index(index).digest == "sha256:" + "c" * 64
    only_arm = mf.Index(mf.OCI_INDEX, index.manifests[:2])
    assert mf.select_from_index(only_arm).digest == "sha256:" + "b" * 64
    with pytest.raises(UnsupportedArtifact):
        mf.select_from_index(mf.Index(mf.OCI_INDEX, index.manifests[:1]))


def test_manifest_parsing_and_errors():
    body = mf.build_artifact_manifest([mf.Descriptor(mf.WEIGHT, "sha256:" + "1" * 64, 5, {mf.TITLE: "m.safetensors"})], mf.ADAPTER_ARTIFACT_TYPE)
    parsed = mf.parse(body)
    assert isinstance(parsed, mf.Manifest) and parsed.is_file_artifact and parsed.artifact_type == mf.ADAPTER_ARTIFACT_TYPE
    assert parsed.config.media_type == mf.EMPTY_CONFIG_TYPE and parsed.config.digest == mf.digest_of(b"{}")
    assert body == mf.build_artifact_manifest(list(parsed.layers), mf.ADAPTER_ARTIFACT_TYPE)  # deterministic
    with pytest.raises(UnsupportedArtifact, match="schema 1"):
        mf.parse(json.dumps({"schemaVersion": 1}).encode())
    with pytest.raises(UnsupportedArtifact, match="not valid JSON"):
        mf.parse(b"<html>")


@pytest.mark.parametrize("name, expected", [
    ("model-00001-of-00002.safetensors", mf.WEIGHT), ("config.json", mf.WEIGHT_CONFIG), ("chat_template.jinja", mf.WEIGHT_CONFIG),
    ("README.md", mf.DOC), ("LICENSE", mf.DOC), ("modeling_phi3.py", mf.CODE), ("weird.xyz", mf.OCTET),
])
def test_file_media_types(name, expected):
    assert mf.file_media_type(name) == expected


@pytest.mark.parametrize("name, safe", [("a/b.json", "a/b.json"), ("./a", "a"), ("../a", None), ("/etc/x", None), ("a/../../b", None), ("a/./b", "a/b")])
def test_safe_relpath(name, safe):
    assert mf.safe_relpath(name) == safe


def test_place_tree_is_atomic_and_refuses_foreign_dirs(tmp_path):
    dest = tmp_path / "model"

    def build(tmp):
        (tmp / "a.bin").write_bytes(b"1")

    place_tree(dest, build, {"digest": "one"})
    assert is_complete(dest) and (dest / "a.bin").read_bytes() == b"1"

    def crash(tmp):
        (tmp / "half.bin").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        place_tree(tmp_path / "other", crash, {"digest": "two"})
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp dir left behind

    place_tree(dest, lambda tmp: (tmp / "b.bin").write_bytes(b"2"), {"digest": "three"})  # our own tree is replaced
    assert sorted(p.name for p in dest.iterdir()) == sorted([MARKER, "b.bin"])

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(DestinationError, match="not empty"):
        place_tree(foreign, build, {"digest": "x"})
    assert (foreign / "keep.txt").read_text() == "user data"


def test_progress_logs_bytes_rate_and_eta(caplog):
    import logging

    from artifacts.progress import Progress

    log = logging.getLogger("artifacts.test")
    with caplog.at_level(logging.INFO, logger="artifacts.test"):
        p = Progress("pull r.io/a:1", 4 << 20, log, interval=0)
        p.add(1 << 20)
        p.add(1 << 20, fetched=False)
        p.finish()
    first, last = caplog.messages[0], caplog.messages[-1]
    assert first.startswith("pull r.io/a:1: 1.0 MiB / 4.0 MiB (25%)") and "/s" in first and "ETA" in first
    assert "2.0 MiB / 4.0 MiB (50%)" in last and "ETA" not in last


def test_a_directory_that_cannot_be_replaced_is_filled_in_place_marker_last(tmp_path, monkeypatch):
    """An init container's target can be a volume mount: rmdir/rename onto it fail with EBUSY."""
    import errno
    import os

    dest = tmp_path / "mnt"
    dest.mkdir()
    real_rmdir = os.rmdir

    def busy(path, *args, **kwargs):
        if str(path) == str(dest):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        return real_rmdir(path, *args, **kwargs)

    moved = []
    import shutil

    real_move = shutil.move
    monkeypatch.setattr(os, "rmdir", busy)
    monkeypatch.setattr(shutil, "move", lambda src, dst: (moved.append(Path(dst).name), real_move(src, dst))[1])

    def build(tmp):
        (tmp / "adapter_config.json").write_text("{}")
        (tmp / "zz.safetensors").write_bytes(b"w")

    place_tree(dest, build, {"digest": "d"})
    assert is_complete(dest) and (dest / "zz.safetensors").read_bytes() == b"w"
    assert moved[-1] == MARKER  # the marker arrives after every file
    assert [p.name for p in tmp_path.iterdir()] == ["mnt"]
