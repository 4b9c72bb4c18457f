"""The NodeProvisioner hooks' pure core: one cluster-scoped parent owns every GPU node claim.

For each related Workspace: claims wanted = `count` minus the existing (bring-your-own) nodes
that qualify and no other workspace uses. Claim names are deterministic, so the same world
always yields the same claims; a deleted Workspace stops asking and its claims are dropped.
Nodes are indexed once per sync by label, so the whole sync is O(nodes + workspaces).

The same rule as the Workspace sync (DESIGN.md §5): a Workspace whose spec is invalid (whatever
`validate_workspace` reports, which is what the Workspace sync calls InvalidSpec) keeps its claims
exactly as last applied and gets none new; the status names it and says why. A malformed request
never gets here: `decode` with `hooks.core.protocol.NodeProvisionerSyncRequest` answers it with a 4xx.
"""
from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import pydantic

from hooks.core import nodes as nodesel
from hooks.core.api import NodeProvisionerSpec
from hooks.core.protocol import NODE_KEY, WORKSPACE_KEY
from hooks.core.errors import INVALID_SPEC
from hooks.core.settings import ClaimApi, Settings
from hooks.core.status import FALSE, TRUE, Cond, clip, render
from hooks.core.validation import FieldError, validate_workspace
from metacontroller.api import KubeObject, Obj, RequestError, SyncRequest, json_path
from metacontroller.apply import as_last_applied, last_applied_children
from presets.facts import ClaimFacts

GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
#: Invalid Workspaces named in the WorkspacesValid condition's message; the rest are counted.
MAX_NAMED_INVALID = 10
#: Longest reason an invalid Workspace gets in the status (a value it quotes may be huge).
MAX_REASON_CHARS = 1000
#: Workspaces up to this size (JSON text) have their validity memoised; bounds the cache's memory.
MAX_CACHED_SPEC_CHARS = 16_384


def customize(parent: Obj) -> Obj:
    try:
        spec = NodeProvisionerSpec.model_validate(parent.get("spec") or {})
    except pydantic.ValidationError as exc:
        raise RequestError(422, [f"{json_path(('parent', 'spec', *e['loc']))}: {e['msg']}"
                                 for e in exc.errors(include_url=False)]) from exc
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


@dataclass(frozen=True)
class ClaimTarget:
    """What every claim of one sync shares: the API this installation emits and the NodeProvisioner's
    settings (the nodeClassRef dumped once per sync, not once per claim)."""
    claim_api: ClaimApi
    spec: NodeProvisionerSpec
    node_class_ref: Obj

    @classmethod
    def of(cls, claim_api: ClaimApi, spec: NodeProvisionerSpec) -> "ClaimTarget":
        return cls(claim_api, spec, spec.node_class_ref.model_dump(by_alias=True))


def build_claim(target: ClaimTarget, facts: ClaimFacts, index: int) -> Obj:
    """The index-th node claim of a Workspace, in the API this installation emits."""
    claim_api, spec = target.claim_api, target.spec
    name, instance_type = facts.claim_names[index], facts.instance_type
    labels = {**facts.match_labels, nodesel.WS_LABEL: facts.name, nodesel.WS_NS_LABEL: facts.namespace}
    storage = f"{max(1, int(round(facts.disk_gib)))}Gi"
    if claim_api.kind == "Machine":
        labels["karpenter.sh/provisioner-name"] = spec.provisioner_name
        return {"apiVersion": claim_api.api_version, "kind": claim_api.kind,
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
    return {"apiVersion": claim_api.api_version, "kind": claim_api.kind,
            "metadata": {"name": name, "labels": labels, "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
            "spec": {"taints": [dict(GPU_TAINT)],
                     "nodeClassRef": dict(target.node_class_ref),
                     "requirements": requirements,
                     "resources": {"requests": {"storage": storage}}}}


def _assess(spec: Obj) -> tuple[tuple[FieldError, ...], Optional[ClaimFacts]]:
    """(errors, claim facts of a valid Workspace): one parse, one derivation."""
    checked = validate_workspace(spec)
    return tuple(checked.errors), (checked.facts.claims if checked.valid else None)


@functools.lru_cache(maxsize=65536)
def _assessed(canonical: str) -> tuple[tuple[FieldError, ...], Optional[ClaimFacts]]:
    """`_assess` of one Workspace (status left out), memoised by its JSON text: every sync sees
    every Workspace again, nearly all unchanged, and parsing and validation were most of a sync's
    cost. Keyed by the whole content, so the cache cannot answer for a different spec (Metacontroller
    sends maps with sorted keys; another order is only a miss). It keeps only the errors and the
    few claim facts, not the parsed model: thousands of models would slow every GC pass."""
    return _assess(json.loads(canonical))


def _ready(claim: Optional[KubeObject]) -> bool:
    conditions = (claim.status.conditions if claim is not None and claim.status else None) or []
    return any(c.type == "Ready" and c.status == TRUE for c in conditions)


def _claim_api_condition(asked: Optional[str], emitted: ClaimApi) -> Cond:
    if asked is None or asked == emitted.name:
        return Cond("ClaimApi", TRUE, "ClaimApiMatches",
                    f"emitting {emitted.api_version} {emitted.kind} ({emitted.name}), as the deploy overlay sets")
    return Cond("ClaimApi", FALSE, "ClaimApiMismatch",
                f"spec.claimApi asks for {asked} but this installation emits {emitted.name} "
                f"({emitted.api_version} {emitted.kind}), set by its deploy overlay (KAITO_CLAIM_API and the "
                f"controller's child kind); the overlay wins: remove spec.claimApi or set it to {emitted.name}")


def _validity_condition(invalid: list[tuple[str, str]]) -> Cond:
    if not invalid:
        return Cond("WorkspacesValid", TRUE, "AllWorkspacesValid", "every related Workspace is valid")
    named = "; ".join(f"{ref}: {why}" for ref, why in invalid[:MAX_NAMED_INVALID])
    more = f"; and {len(invalid) - MAX_NAMED_INVALID} more" if len(invalid) > MAX_NAMED_INVALID else ""
    return Cond("WorkspacesValid", FALSE, "InvalidWorkspaces",
                f"{len(invalid)} Workspace{'s' if len(invalid) != 1 else ''} invalid, claims kept as last applied: "
                f"{named}{more}")


def _reply(request: SyncRequest, conds: list[Cond], now: str, status: Obj, children: list[Obj]) -> Obj:
    observed = (request.raw["parent"].get("status") or {}).get("conditions")
    status["conditions"] = render(conds, observed, now, request.parent.metadata.generation or 0)
    return {"status": status, "children": children}


def sync(request: SyncRequest, settings: Settings, now: str) -> Obj:
    emitted = settings.claim_api
    try:
        spec = NodeProvisionerSpec.model_validate(request.raw["parent"].get("spec") or {})
    except pydantic.ValidationError as exc:
        # An invalid NodeProvisioner keeps every claim as last applied, like an invalid Workspace.
        why = "; ".join(f"{json_path(('spec', *e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        conds = [Cond("Ready", FALSE, INVALID_SPEC, why), _claim_api_condition(None, emitted)]
        return _reply(request, conds, now, {"claimApi": emitted.name, "workspaces": []},
                      last_applied_children(request.raw.get("children") or {}))

    observed_claims: dict[str, KubeObject] = {}
    claims_of: dict[tuple[str, str], list[tuple[KubeObject, Obj]]] = defaultdict(list)
    for group in sorted(request.children):
        for claim, sent in request.pairs("children", group):
            observed_claims[claim.metadata.name] = claim
            labels = claim.metadata.labels or {}
            claims_of[(labels.get(nodesel.WS_NS_LABEL, ""), labels.get(nodesel.WS_LABEL, ""))].append((claim, sent))
    index = _NodeIndex(sent for _, sent in request.pairs("related", NODE_KEY))
    target = ClaimTarget.of(emitted, spec)
    used: set[str] = set()
    claims: list[Obj] = []
    summary: list[Obj] = []
    invalid: list[tuple[str, str]] = []
    workspaces = sorted(request.pairs("related", WORKSPACE_KEY),
                        key=lambda pair: (pair[0].metadata.namespace, pair[0].metadata.name))
    for ws, sent in workspaces:
        ns, name = ws.metadata.namespace or "", ws.metadata.name
        if ws.metadata.deletionTimestamp:
            continue
        spec_only = {k: v for k, v in sent.items() if k != "status"}
        text = json.dumps(spec_only, separators=(",", ":"))
        errors, facts = _assessed(text) if len(text) <= MAX_CACHED_SPEC_CHARS else _assess(spec_only)
        if errors:
            # Nothing new, and an edit typo must not take away the nodes a running workspace
            # sits on: its claims stay exactly as last applied.
            kept = sorted(claims_of.get((ns, name), []), key=lambda pair: pair[0].metadata.name)
            claims += [as_last_applied(claim_sent) for _, claim_sent in kept]
            why = clip("; ".join(map(str, errors)), MAX_REASON_CHARS)
            invalid.append((f"{ns}/{name}", why))
            summary.append({"namespace": ns, "name": name, "claims": len(kept), "ready": sum(_ready(c) for c, _ in kept),
                            "invalid": why})
            continue
        wanted = _wanted_claims(target, facts, index, used)
        claims += wanted
        if wanted:
            summary.append({"namespace": ns, "name": name, "claims": len(wanted),
                            "ready": sum(_ready(observed_claims.get(c["metadata"]["name"])) for c in wanted)})
    total, ready = sum(s["claims"] for s in summary), sum(s["ready"] for s in summary)
    cond = Cond("Ready", TRUE, "ClaimsReady", f"{ready} of {total} node claims ready") if ready >= total else \
        Cond("Ready", FALSE, "ClaimsPending", f"{ready} of {total} node claims ready")
    conds = [cond, _claim_api_condition(spec.claim_api, emitted), _validity_condition(invalid)]
    reply = _reply(request, conds, now, {"claimApi": emitted.name, "workspaces": summary}, claims)
    if ready < total:
        reply["resyncAfterSeconds"] = settings.pending_resync_seconds
    return reply


def _wanted_claims(target: ClaimTarget, facts: ClaimFacts, index: _NodeIndex, used: set[str]) -> list[Obj]:
    """The claims a valid Workspace needs: `count` minus the existing nodes it can use (marked used)."""
    ns, name, count = facts.namespace, facts.name, facts.node_count
    byo = 0
    pool = [index.by_name[p] for p in facts.preferred_nodes if p in index.by_name] + \
        index.candidates(facts.match_labels, facts.instance_type)
    for node in pool:
        if byo >= count:
            break
        nm = node["metadata"]["name"]
        if nm in used or not nodesel.qualifies(node, namespace=ns, name=name, instance_type=facts.instance_type,
                                               match_labels=facts.match_labels, preferred=list(facts.preferred_nodes),
                                               needs_gpu=facts.gpus_per_node > 0):
            continue
        used.add(nm)
        byo += 1
    return [build_claim(target, facts, i) for i in range(count - byo)]
