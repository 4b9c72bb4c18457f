"""The NodeProvisioner hooks' pure core: one cluster-scoped parent owns every GPU node claim.

For each related Workspace: claims wanted = `count` minus the existing (bring-your-own) nodes
that qualify and no other workspace uses. Claim names are deterministic, so the same world
always yields the same claims; a deleted Workspace stops asking and its claims are dropped.
Nodes are indexed once per sync by label, so the whole sync is O(nodes + workspaces).
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any, Iterable, Mapping, Optional

import presets
from hooks import nodes as nodesel
from hooks.api import NodeProvisionerSpec, ResourceSpec
from hooks.status import FALSE, TRUE, Cond, render
from hooks.validation import gpu_fit, validate_workspace
from metacontroller.api import group_key

Obj = dict[str, Any]
WORKSPACE_KEY = group_key("kaito.sh/v1alpha1", "Workspace")
NODE_KEY = group_key("v1", "Node")
GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
DEFAULT_INSTANCE_TYPE = ResourceSpec.model_fields["instance_type"].default
DEFAULT_DISK_GIB = 120
LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"


def claim_name(namespace: str, name: str, index: int) -> str:
    """'ws' + 9 hex digits: a valid AKS agent-pool name (<= 11 chars, lowercase, starts with a letter)."""
    return "ws" + hashlib.sha256(f"{namespace}/{name}/{index}".encode()).hexdigest()[:9]


def customize(parent: Obj) -> Obj:
    spec = NodeProvisionerSpec.model_validate(parent.get("spec") or {})
    selector = spec.workspace_selector.model_dump(by_alias=True, exclude_none=True) if spec.workspace_selector else {}
    return {"relatedResources": [
        {"apiVersion": "kaito.sh/v1alpha1", "resource": "workspaces", "labelSelector": selector},
        {"apiVersion": "v1", "resource": "nodes", "labelSelector": {}},
    ]}


class _NodeIndex:
    """Unowned Ready nodes, indexed by (label, value) and by name, built once per sync."""

    def __init__(self, nodes: Iterable[Obj]) -> None:
        self.by_label: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        self.by_name: dict[str, Obj] = {}
        self.all: list[Obj] = []
        for node in nodes:
            if nodesel.owner_workspace(node) is not None or not nodesel.node_ready(node):
                continue  # nodes our claims brought up are counted through their claims
            self.all.append(node)
            self.by_name[node["metadata"]["name"]] = node
            for kv in ((node["metadata"].get("labels") or {}).items()):
                self.by_label[kv].append(node)

    def candidates(self, match_labels: Mapping[str, str], instance_type: str) -> list[Obj]:
        keys = list(match_labels.items()) or [(nodesel.INSTANCE_TYPE_LABEL, instance_type)]
        smallest = min((self.by_label.get(k, []) for k in keys), key=len)
        return smallest


_VALIDITY: dict[str, bool] = {}  # spec repr -> valid
_VALIDITY_MAX = 65536


def _spec_valid(ws: Obj) -> bool:
    """The Workspace sync's own verdict, so no node is bought for a spec that sync will not run.
    Memoised by the spec's repr: equal for equal decoded JSON, and far cheaper than validating."""
    spec = {k: ws[k] for k in ("apiVersion", "kind", "resource", "inference", "tuning") if k in ws}
    spec["metadata"] = {"name": ws["metadata"]["name"]}
    key = repr(spec)
    if key not in _VALIDITY:
        if len(_VALIDITY) >= _VALIDITY_MAX:
            _VALIDITY.clear()
        _VALIDITY[key] = not validate_workspace(spec)
    return _VALIDITY[key]


def _workspace_shape(ws: Obj) -> Optional[tuple[str, str, Optional[str]]]:
    """(purpose, instanceType, preset name) or None when the object is not a usable Workspace."""
    res = ws.get("resource")
    if not isinstance(res, Mapping):
        return None
    if isinstance(ws.get("inference"), Mapping):
        preset = ((ws["inference"].get("preset") or {}).get("name"))
        return "inference", res.get("instanceType") or DEFAULT_INSTANCE_TYPE, preset
    if isinstance(ws.get("tuning"), Mapping):
        return "tuning", res.get("instanceType") or DEFAULT_INSTANCE_TYPE, (ws["tuning"].get("preset") or {}).get("name")
    return None


class _CatalogCheck:
    """Per-sync memo of 'does this preset fit this many nodes of this instance type'."""

    def __init__(self) -> None:
        self.memo: dict[tuple, Optional[presets.Preset | bool]] = {}

    def preset_if_ok(self, purpose: str, preset_name: Optional[str], instance_type: str, count: int):
        key = (purpose, preset_name, instance_type, count)
        if key not in self.memo:
            self.memo[key] = self._check(*key)
        return self.memo[key]

    @staticmethod
    def _check(purpose: str, preset_name: Optional[str], instance_type: str, count: int):
        if preset_name is None:
            return True  # a template workspace: nothing to check against the catalog
        try:
            preset = presets.get_preset(preset_name)
        except presets.PresetNotFound:
            return None
        if purpose == "tuning" and not preset.tunable:
            return None
        if purpose == "inference" and gpu_fit(preset, instance_type, count):
            return None
        return preset


def build_claim(spec: NodeProvisionerSpec, ns: str, ws_name: str, index: int, instance_type: str,
                match_labels: Mapping[str, str], disk_gib: float) -> Obj:
    name = claim_name(ns, ws_name, index)
    labels = {**match_labels, nodesel.WS_LABEL: ws_name, nodesel.WS_NS_LABEL: ns}
    storage = f"{max(1, int(round(disk_gib)))}Gi"
    if spec.claim_api == "machine":
        labels["karpenter.sh/provisioner-name"] = spec.provisioner_name
        return {"apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
                "metadata": {"name": name, "labels": labels},
                "spec": {"machineTemplateRef": {"name": name},
                         "taints": [dict(GPU_TAINT)],
                         "requirements": [
                             {"key": nodesel.INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance_type]},
                             {"key": "karpenter.sh/provisioner-name", "operator": "In", "values": [spec.provisioner_name]},
                             {"key": "kaito.sh/machine-type", "operator": "In", "values": ["gpu"]},
                             {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                             {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}],
                         "resources": {"requests": {"storage": storage}}}}
    labels["karpenter.sh/nodepool"] = spec.node_pool
    requirements = [
        {"key": "karpenter.sh/nodepool", "operator": "In", "values": [spec.node_pool]},
        {"key": nodesel.INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance_type]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]
    if instance_type.startswith("Standard_"):
        requirements.append({"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [instance_type]})
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": labels, "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
            "spec": {"taints": [dict(GPU_TAINT)],
                     "nodeClassRef": spec.node_class_ref.model_dump(by_alias=True),
                     "requirements": requirements,
                     "resources": {"requests": {"storage": storage}}}}


def _as_last_applied(obj: Obj) -> Obj:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if raw:
        return json.loads(raw)
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": meta["name"], "labels": meta.get("labels") or {}}, "spec": obj.get("spec") or {}}


def _claim_ready(claim: Optional[Obj]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in ((claim or {}).get("status") or {}).get("conditions") or [])


def sync(request: Obj, now: str) -> Obj:
    parent = request["parent"]
    spec = NodeProvisionerSpec.model_validate(parent.get("spec") or {})
    related = request.get("related") or {}
    observed_claims: dict[str, Obj] = {}
    claims_of: dict[tuple[str, str], list[Obj]] = defaultdict(list)
    for group in (request.get("children") or {}).values():
        for obj in (group or {}).values():
            observed_claims[obj["metadata"]["name"]] = obj
            labels = obj["metadata"].get("labels") or {}
            claims_of[(labels.get(nodesel.WS_NS_LABEL, ""), labels.get(nodesel.WS_LABEL, ""))].append(obj)
    index = _NodeIndex((related.get(NODE_KEY) or {}).values())
    check = _CatalogCheck()
    used: set[str] = set()
    claims: list[Obj] = []
    summary: list[Obj] = []
    workspaces = sorted((related.get(WORKSPACE_KEY) or {}).values(),
                        key=lambda w: (w["metadata"].get("namespace", ""), w["metadata"]["name"]))
    for ws in workspaces:
        meta = ws["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        shape = _workspace_shape(ws)
        if shape is None:
            continue
        purpose, instance_type, preset_name = shape
        res = ws["resource"]
        count = res.get("count") or 1
        if not isinstance(count, int) or count < 1:
            continue
        ns, name = meta.get("namespace", ""), meta["name"]
        preset = check.preset_if_ok(purpose, preset_name, instance_type, count)
        if preset is None or not _spec_valid(ws):
            # Invalid: nothing new, but an edit typo must not take away the nodes a running
            # workspace sits on, so its existing claims are kept exactly as last applied.
            claims += [_as_last_applied(c) for c in sorted(claims_of.get((ns, name), []),
                                                           key=lambda c: c["metadata"]["name"])]
            continue
        match_labels = nodesel.selector_labels(res.get("labelSelector"))
        preferred = res.get("preferredNodes") or []
        sku = presets.get_sku(instance_type)
        needs_gpu = (sku.gpus if sku else 1) > 0
        byo = 0
        pool = [index.by_name[p] for p in preferred if p in index.by_name] + index.candidates(match_labels, instance_type)
        for node in pool:
            if byo >= count:
                break
            nm = node["metadata"]["name"]
            if nm in used or not nodesel.qualifies(node, namespace=ns, name=name, instance_type=instance_type,
                                                   match_labels=match_labels, preferred=preferred,
                                                   needs_gpu=needs_gpu):
                continue
            used.add(nm)
            byo += 1
        disk = preset.disk_gib if isinstance(preset, presets.Preset) else DEFAULT_DISK_GIB
        wanted = [build_claim(spec, ns, name, i, instance_type, match_labels, disk) for i in range(count - byo)]
        claims += wanted
        if wanted:
            summary.append({"namespace": ns, "name": name, "claims": len(wanted),
                            "ready": sum(_claim_ready(observed_claims.get(c["metadata"]["name"])) for c in wanted)})
    total, ready = sum(s["claims"] for s in summary), sum(s["ready"] for s in summary)
    cond = Cond("Ready", TRUE, "ClaimsReady", f"{ready} of {total} node claims ready") if ready >= total else \
        Cond("Ready", FALSE, "ClaimsPending", f"{ready} of {total} node claims ready")
    observed = (parent.get("status") or {}).get("conditions")
    generation = int((parent.get("metadata") or {}).get("generation") or 0)
    status = {"workspaces": summary, "conditions": render([cond], observed, now, generation)}
    reply: Obj = {"status": status, "children": claims}
    if ready < total:
        reply["resyncAfterSeconds"] = 15.0
    return reply
