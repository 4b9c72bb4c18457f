"""Model and adapter delivery: OCI artifacts, Hugging Face and local sources, one node-local cache.

Torch-free; imported by serving (model loader), tuning (adapter push) and the adapter init
containers (`kaito pull`). The public surface is this module:

    resolve(source, *, dest=None, cache_dir=None, docker_config=None, insecure=None, hf_token=None) -> Path
    pull(ref, dest=None, *, cache_dir=None, docker_config=None, insecure=None, jobs=None) -> PullResult
    resolve_digest(ref, *, docker_config=None, insecure=None) -> str      (a tag's manifest digest now)
    push(directory, ref, *, docker_config=None, insecure=None, artifact_type=ADAPTER_ARTIFACT_TYPE, annotations=None) -> str
    mirror(hf_source, oci_ref, *, docker_config=None, insecure=None, hf_token=None, cache_dir=None, exclude=None) -> str
    is_complete(directory) -> bool
    parse_source(text) -> OciReference | HfReference | LocalSource

Errors: artifacts.errors (ArtifactError and its subclasses).
"""
from __future__ import annotations

from .cache import default_cache_dir
from .errors import (
    ArtifactError,
    DestinationError,
    DigestMismatch,
    HubError,
    InvalidReference,
    NotFound,
    RegistryError,
    Unauthorized,
    UnsupportedArtifact,
)
from .fs import MARKER, is_complete
from .manifest import ADAPTER_ARTIFACT_TYPE, MODEL_ARTIFACT_TYPE
from .pull import PullResult, pull, resolve_digest
from .push import push
from .reference import HfReference, LocalSource, OciReference, parse_hf, parse_oci, parse_source
from .sources import mirror, resolve

__all__ = [
    "resolve", "pull", "resolve_digest", "push", "mirror", "is_complete", "PullResult", "MARKER",
    "parse_source", "parse_oci", "parse_hf", "OciReference", "HfReference", "LocalSource",
    "ADAPTER_ARTIFACT_TYPE", "MODEL_ARTIFACT_TYPE", "default_cache_dir",
    "ArtifactError", "InvalidReference", "NotFound", "Unauthorized", "DigestMismatch",
    "RegistryError", "UnsupportedArtifact", "DestinationError", "HubError",
]
