"""Kubernetes names derived from user-chosen names that Kubernetes itself would refuse.

KAITO v0.3 accepts adapter names of any case, up to 253 characters, and v0.4+ adds dots; a
container, volume or directory name built from one must still be a DNS-1123 label (lowercase,
at most 63 characters). `adapter_key` is that derivation: a name that already is a short
lowercase label is kept as it is (so `phi-3-adapter` stays readable); any other name is
lowercased, reduced to label characters, cut, and suffixed with a hash of the exact original,
so `Adapter-1` and `adapter-1` get different keys and a key never changes while its name does not.
"""
from __future__ import annotations

import hashlib
import re

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# "adapter-pull-secret-" + key must still fit a 63-character label.
KEY_MAX = 40
_HASH_LEN = 8


def adapter_key(name: str) -> str:
    """A stable DNS-1123 label (at most KEY_MAX characters) that identifies the adapter `name`."""
    if len(name) <= KEY_MAX and _LABEL.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LEN]
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:KEY_MAX - _HASH_LEN - 1].rstrip("-")
    return f"{readable}-{digest}" if readable else digest
