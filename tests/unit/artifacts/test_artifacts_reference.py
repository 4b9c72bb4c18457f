from pathlib import Path

import pytest

from artifacts import HfReference, InvalidReference, LocalSource, OciReference, parse_source
from artifacts.reference import parse_hf, parse_oci

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("oci://myacr.azurecr.io/adapter:0.0.1", "myacr.azurecr.io", "adapter", "0.0.1", None),
        ("myacr.azurecr.io/kaito/phi-3-adapter:0.0.1", "myacr.azurecr.io", "kaito/phi-3-adapter", "0.0.1", None),
        ("oci://127.0.0.1:5000/models/tiny:v1", "127.0.0.1:5000", "models/tiny", "v1", None),
        ("localhost/x/y", "localhost", "x/y", None, None),
        (f"ghcr.io/org/repo@{DIGEST}", "ghcr.io", "org/repo", None, DIGEST),
        (f"ghcr.io/org/repo:1.2@{DIGEST}", "ghcr.io", "org/repo", "1.2", DIGEST),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("docker.io/kaito/adapter:1", "docker.io", "kaito/adapter", "1", None),
        ("registry.example.com:8443/a/b_c/d-e:latest", "registry.example.com:8443", "a/b_c/d-e", "latest", None),
    ],
)
def test_image_references(text, registry, repository, tag, digest):
    ref = parse_oci(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag or "latest")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("oci://myacr.azurecr.io/Adapter:1", "invalid repository"),
        ("oci://myacr.azurecr.io/adapter:-bad", "invalid tag"),
        ("oci://myacr.azurecr.io/adapter@sha256:1234", "invalid digest"),
        ("oci://", "empty"),
        ("oci://host.io/a//b:1", "invalid repository"),
    ],
)
def test_bad_image_references_name_the_problem(text, fragment):
    with pytest.raises(InvalidReference, match=fragment):
        parse_oci(text)


def test_docker_hub_api_host():
    assert parse_oci("busybox").api_host == "registry-1.docker.io"
    assert parse_oci("ghcr.io/a/b:1").api_host == "ghcr.io"
    assert str(parse_oci("oci://ghcr.io/a/b:1")) == "ghcr.io/a/b:1"


def test_hf_references():
    assert parse_hf("hf://microsoft/Phi-3-mini-4k-instruct@0a67737cc96d2554230f90338b163bc6380a2a85") == HfReference(
        "microsoft/Phi-3-mini-4k-instruct", "0a67737cc96d2554230f90338b163bc6380a2a85"
    )
    assert parse_hf("hf://gpt2").revision == "main"
    assert parse_hf("hf://org/repo@refs/pr/1").revision == "refs/pr/1"
    for bad in ("hf://", "hf://a/b/c", "hf://../etc", "hf://org/repo@../x"):
        with pytest.raises(InvalidReference, match="hf://|revision"):
            parse_hf(bad)


def test_parse_source_kinds(tmp_path, monkeypatch):
    assert isinstance(parse_source("oci://ghcr.io/a/b:1"), OciReference)
    assert isinstance(parse_source("myacr.azurecr.io/adapter:0.0.1"), OciReference)
    assert isinstance(parse_source("hf://org/repo@main"), HfReference)
    assert parse_source(str(tmp_path)) == LocalSource(tmp_path)
    assert parse_source(f"file://{tmp_path}") == LocalSource(tmp_path)
    assert parse_source(tmp_path) == LocalSource(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "phi").mkdir(parents=True)
    assert parse_source("models/phi") == LocalSource(Path("models/phi"))  # an existing relative path wins


def test_parse_source_rejects_what_it_cannot_fetch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidReference, match="unsupported scheme 's3'.*oci://"):
        parse_source("s3://bucket/model")
    with pytest.raises(InvalidReference, match="neither an existing local path nor an image reference"):
        parse_source("models/phi")
    with pytest.raises(InvalidReference, match="empty source"):
        parse_source("")
