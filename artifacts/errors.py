"""The one error hierarchy of the delivery library.

    ArtifactError
    ├── InvalidReference (also a ValueError)   a source or image reference that cannot be parsed
    ├── NotFound                               repository, tag, manifest, blob or path missing
    ├── Unauthorized                           credentials refused or absent
    ├── DigestMismatch                         bytes do not hash to the promised digest
    ├── RegistryError                          unexpected status or failed connection
    ├── UnsupportedArtifact                    a manifest or layer kind we cannot unpack
    ├── DestinationError                       the destination cannot be written or is not ours
    └── HubError                               any other Hugging Face hub failure

Every error carries a message a user can act on. No message ever contains a credential: messages
name the reference, the registry and the HTTP status, never headers, tokens or config contents.
"""
from __future__ import annotations


class ArtifactError(Exception):
    """Base of every error raised by `artifacts`."""


class InvalidReference(ArtifactError, ValueError):
    """A source or image reference that cannot be parsed."""


class NotFound(ArtifactError):
    """The repository, tag, manifest, blob or local path does not exist."""


class Unauthorized(ArtifactError):
    """The registry or hub refused the credentials (or none were found)."""


class DigestMismatch(ArtifactError):
    """Downloaded bytes do not hash to the digest the manifest promised."""


class RegistryError(ArtifactError):
    """The registry answered with an unexpected status, or the connection failed."""


class UnsupportedArtifact(ArtifactError):
    """A manifest or layer kind this library cannot unpack (e.g. zstd layers, schema 1)."""


class DestinationError(ArtifactError):
    """The destination directory cannot be written or holds something that is not ours."""


class HubError(ArtifactError):
    """A Hugging Face hub request failed for a reason other than not-found or auth."""
