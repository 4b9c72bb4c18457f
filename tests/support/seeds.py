"""The seed documents' placeholders and the real references a user puts in their place.

The seeds stay verbatim in examples/ and admission refuses their placeholders (KAITO's verdict:
the repository must be lower-case); tests that need a Workspace that runs fill them in here.
"""
from __future__ import annotations

PLACEHOLDERS = {
    "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1": "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1",
    "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1": "myregistry.azurecr.io/adapters/phi-3-tuned:0.0.1",
}


def with_real_references(node):
    """A copy of a document with every seed placeholder replaced by a real reference."""
    if isinstance(node, dict):
        return {k: with_real_references(v) for k, v in node.items()}
    if isinstance(node, list):
        return [with_real_references(v) for v in node]
    return PLACEHOLDERS.get(node, node) if isinstance(node, str) else node
