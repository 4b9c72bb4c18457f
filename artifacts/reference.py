"""Parsing of source strings: `oci://`, bare image references, `hf://` and local paths (pure).

Image references follow the grammar of github.com/distribution/reference: `[host[:port]/]path[:tag][@digest]`.
A first path component is a registry host when it contains a '.' or ':' or is 'localhost';
otherwise the reference is on Docker Hub (`docker.io`, `library/` added for single names).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from contract.paths import OCI_SCHEME

from .errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]{1,5})?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HF_REPO_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_HF_REVISION_RE = re.compile(r"^[\w.\-/]{1,256}$")

HF_SCHEME = "hf://"
FILE_SCHEME = "file://"
ACCEPTED_FORMS = "oci://REGISTRY/REPO:TAG, oci://REGISTRY/REPO@sha256:..., REGISTRY/REPO:TAG, hf://ORG/REPO[@REVISION], or a local directory"


@dataclass(frozen=True)
class OciReference:
    """An image or artifact in a registry. `tag` and `digest` may both be set (digest wins)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/ in the registry API."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


@dataclass(frozen=True)
class HfReference:
    """A Hugging Face model repository at a revision (branch, tag or commit sha)."""

    repo_id: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{HF_SCHEME}{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class LocalSource:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


Source = OciReference | HfReference | LocalSource


def parse_oci(text: str) -> OciReference:
    """Parse `oci://host/repo:tag`, `host/repo@sha256:...` or a Docker Hub name like `busybox:1.36`."""
    raw = text[len(OCI_SCHEME):] if text.startswith(OCI_SCHEME) else text
    if not raw or raw != raw.strip():
        raise InvalidReference(f"invalid image reference {text!r}: empty or surrounded by spaces; expected {ACCEPTED_FORMS}")
    name, digest = raw, None
    if "@" in raw:
        name, digest = raw.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid digest in {text!r}: expected sha256: followed by 64 lowercase hex characters")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid tag {tag!r} in {text!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _HOST_RE.match(registry):
            raise InvalidReference(f"invalid registry host {registry!r} in {text!r}")
    else:
        registry, path = DOCKER_HUB, name
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise InvalidReference(
            f"invalid repository {path!r} in {text!r}: lowercase letters, digits and separators (. _ __ -) in /-separated components"
        )
    return OciReference(registry=registry, repository=path, tag=tag, digest=digest)


def parse_hf(text: str) -> HfReference:
    raw = text[len(HF_SCHEME):] if text.startswith(HF_SCHEME) else text
    repo_id, _, revision = raw.partition("@")
    if not _HF_REPO_RE.match(repo_id) or ".." in repo_id:
        raise InvalidReference(f"invalid Hugging Face repo {repo_id!r} in {text!r}: expected hf://ORG/REPO[@REVISION]")
    revision = revision or "main"
    if not _HF_REVISION_RE.match(revision) or ".." in revision:
        raise InvalidReference(f"invalid Hugging Face revision {revision!r} in {text!r}: a branch, tag or commit sha")
    return HfReference(repo_id=repo_id, revision=revision)


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..")


def parse_source(text: str | os.PathLike) -> Source:
    """Classify a source string. Local paths that exist win over bare image references."""
    if isinstance(text, os.PathLike):
        return LocalSource(Path(text))
    if not isinstance(text, str) or not text:
        raise InvalidReference(f"empty source; expected {ACCEPTED_FORMS}")
    if text.startswith(OCI_SCHEME):
        return parse_oci(text)
    if text.startswith(HF_SCHEME):
        return parse_hf(text)
    if text.startswith(FILE_SCHEME):
        return LocalSource(Path(text[len(FILE_SCHEME):]))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidReference(f"unsupported scheme {scheme!r} in {text!r}; expected {ACCEPTED_FORMS}")
    if _looks_like_path(text) or os.path.exists(text):
        return LocalSource(Path(text).expanduser())
    ref = parse_oci(text)
    explicit_registry = text.split("/", 1)[0] == ref.registry or text.startswith(DOCKER_HUB + "/")
    if not (explicit_registry or ref.tag or ref.digest):
        # 'models/phi' is far more likely a mistyped path than a Docker Hub image without a tag.
        raise InvalidReference(f"{text!r} is neither an existing local path nor an image reference with a registry or tag; expected {ACCEPTED_FORMS}")
    return ref
