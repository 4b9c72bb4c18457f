"""The pod condition the serving runtime sets on its own pod, and the names the hooks give it to do so.

A Workspace-driven adapter change whose fetch fails keeps the old set serving (issue 14). The
runtime reports it as the custom pod condition `ADAPTERS_CONDITION` (True: every adapter of the
Workspace serves; False: one or more cannot, the message names each and why), patched on the pod's
own status. It is deliberately not a readiness gate: the pod stays Ready and in the Service,
because the old set still answers. The Workspace status hook reads it from the workspace's pods.

The hooks give inference pods what the runtime needs to patch it: POD_NAME / POD_NAMESPACE from the
downward API and a ServiceAccount bound to `RUNTIME_CLUSTER_ROLE` (patch/get on pods/status).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["ADAPTERS_AVAILABLE", "ADAPTERS_CONDITION", "ADAPTER_UNAVAILABLE", "POD_NAMESPACE_ENV", "POD_NAME_ENV",
           "RUNTIME_CLUSTER_ROLE", "pod_condition"]

#: A qualified name, as the API server requires of pod condition types it does not own.
ADAPTERS_CONDITION = "kaito.sh/AdaptersAvailable"
#: Reasons of that condition (True / False).
ADAPTERS_AVAILABLE = "AdaptersAvailable"
ADAPTER_UNAVAILABLE = "AdapterUnavailable"
#: Downward-API env vars naming the pod the runtime runs in.
POD_NAME_ENV = "POD_NAME"
POD_NAMESPACE_ENV = "POD_NAMESPACE"
#: The ClusterRole deploy/base ships (patch/get on pods/status); each Workspace binds it to its runtime.
RUNTIME_CLUSTER_ROLE = "kaito-runtime-pod-status"


def pod_condition(pod: Mapping[str, Any], type_: str = ADAPTERS_CONDITION) -> dict[str, Any] | None:
    """The pod's condition of `type_` as the API server returns the pod (None: not set)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None
