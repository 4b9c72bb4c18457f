"""Which Nodes can host a Workspace: pure functions over plain Node dicts.

A node qualifies when it is Ready, not being deleted, carries the workspace's matchLabels, is
named in preferredNodes or has the workspace's instance type (label
node.kubernetes.io/instance-type), has GPU capacity when the SKU has GPUs, and is not a node
that another workspace's claim brought up (labels kaito.sh/workspace[namespace]).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional


WS_LABEL = "kaito.sh/workspace"
WS_NS_LABEL = "kaito.sh/workspacenamespace"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU = "nvidia.com/gpu"


def node_ready(node: Mapping[str, Any]) -> bool:
    if (node.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def node_gpus(node: Mapping[str, Any]) -> int:
    status = node.get("status") or {}
    raw = (status.get("allocatable") or {}).get(GPU) or (status.get("capacity") or {}).get(GPU) or 0
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def owner_workspace(node: Mapping[str, Any]) -> Optional[tuple[str, str]]:
    """(namespace, name) of the workspace whose claim created this node, if any."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if WS_LABEL not in labels:
        return None
    return labels.get(WS_NS_LABEL, ""), labels[WS_LABEL]


def qualifies(node: Mapping[str, Any], *, namespace: str, name: str, instance_type: str,
              match_labels: Mapping[str, str], preferred: Iterable[str], needs_gpu: bool) -> bool:
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    if meta.get("name") not in preferred and labels.get(INSTANCE_TYPE_LABEL) != instance_type:
        return False
    owner = owner_workspace(node)
    if owner is not None and owner != (namespace, name):
        return False
    if needs_gpu and node_gpus(node) <= 0:
        return False
    return node_ready(node)


def select_nodes(nodes: Iterable[Mapping[str, Any]], *, namespace: str, name: str, count: int,
                 instance_type: str, match_labels: Mapping[str, str], preferred: Iterable[str],
                 previous: Iterable[str], needs_gpu: bool) -> list[str]:
    """Up to `count` qualifying node names, in KAITO's order: preferred, previously used, ours, by name."""
    preferred, previous = set(preferred), set(previous)
    candidates = [n for n in nodes if qualifies(n, namespace=namespace, name=name, instance_type=instance_type,
                                                match_labels=match_labels, preferred=preferred,
                                                needs_gpu=needs_gpu)]

    def rank(n: Mapping[str, Any]) -> tuple:
        nm = n["metadata"]["name"]
        return (nm not in preferred, nm not in previous, owner_workspace(n) is None, nm)

    return [n["metadata"]["name"] for n in sorted(candidates, key=rank)[:count]]
