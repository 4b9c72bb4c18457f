"""Kubernetes label selector and node-affinity matching (plain dicts)."""
from __future__ import annotations

from typing import Any, Mapping, Optional


def _requirement_matches(labels: Mapping[str, str], key: str, op: str, values: list[str] | None) -> bool:
    values = values or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    raise ValueError(f"unknown selector operator {op!r}; accepted: In, NotIn, Exists, DoesNotExist, Gt, Lt")


def label_selector_matches(selector: Optional[Mapping[str, Any]], labels: Optional[Mapping[str, str]]) -> bool:
    """metav1.LabelSelector semantics: `None` matches nothing, `{}` matches everything."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(_requirement_matches(labels, e["key"], e["operator"], e.get("values"))
               for e in selector.get("matchExpressions") or [])


def node_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Required node affinity (ORed terms of ANDed expressions) and nodeSelector against a Node."""
    meta = node.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels.setdefault("kubernetes.io/hostname", meta.get("name", ""))
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    for term in terms:
        fields_ok = all(_requirement_matches({"metadata.name": meta.get("name", "")}, e["key"], e["operator"],
                                             e.get("values")) for e in term.get("matchFields") or [])
        if fields_ok and all(_requirement_matches(labels, e["key"], e["operator"], e.get("values"))
                             for e in term.get("matchExpressions") or []):
            return True
    return False


def tolerates(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """True when the pod tolerates every NoSchedule/NoExecute taint of the node."""
    tolerations = pod_spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        ok = False
        for t in tolerations:
            if t.get("effect") and t["effect"] != taint["effect"]:
                continue
            if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
                ok = True
            elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
                ok = True
            if ok:
                break
        if not ok:
            return False
    return True
