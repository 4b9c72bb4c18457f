"""The ports the hooks put in pod specs and Services and the runtime listens on."""
from __future__ import annotations

__all__ = ["SERVE_PORT", "SERVICE_PORT", "RAY_PORT"]

#: Ray Serve's HTTP proxy in the pod (also `kaito up`'s default port).
SERVE_PORT = 8000
#: The Workspace Service's port, KAITO's: http://<workspace>.<namespace>/ forwards to SERVE_PORT.
SERVICE_PORT = 80
#: The Ray head's GCS port, which `<ws>-worker` pods join through the Service when count > 1.
RAY_PORT = 6379
