"""Names the control plane and the delivery library share: the cache's env var and the OCI source scheme.

`artifacts` reads them (artifacts/cache.py, artifacts/reference.py); the hooks write them into pod
specs and Serve configs without importing the delivery library.
"""
from __future__ import annotations

__all__ = ["CACHE_DIR_ENV", "OCI_SCHEME"]

#: The artifacts cache directory (default ~/.cache/kaito); a pod points it at a volume its containers share.
CACHE_DIR_ENV = "KAITO_CACHE_DIR"
#: The scheme of an OCI artifact or image source: oci://REGISTRY/REPO:TAG[@sha256:...].
OCI_SCHEME = "oci://"
