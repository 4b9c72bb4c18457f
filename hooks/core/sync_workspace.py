"""The Workspace hooks' pure core: `customize(parent)` and `sync(request, now)` -> reply dicts.

Sync turns (Workspace, observed children, related claims and Nodes) into the desired children
and the status. Invariants (DESIGN.md §5): an invalid spec keeps the observed children exactly as
last applied (an edit typo never kills a running service) and creates nothing new; children
appear only once `count` qualifying nodes are Ready; status is deterministic.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import presets
from hooks.core import nodes as nodesel
from hooks.core.children import inference, tuning
from hooks.core.children.inference import ServingPlan
from hooks.core.children.pod import WS_LABEL
from hooks.core.children.tuning import TuningPlan
from hooks.core.errors import INVALID_SPEC
from hooks.core.settings import Settings
from hooks.core.status import FALSE, TRUE, Cond, adapters_condition, combined, pod_problem, render
from hooks.core.validation import validate_workspace
from metacontroller.api import Obj, group_key
from metacontroller.apply import last_applied_children

NODE_KEY = group_key("v1", "Node")
POD_KEY = group_key("v1", "Pod")
DEPLOYMENT_KEY = group_key("apps/v1", "Deployment")
JOB_KEY = group_key("batch/v1", "Job")


# -- customize -----------------------------------------------------------------------------
def customize(parent: Obj, settings: Settings) -> Obj:
    """Ask for this workspace's own node claims, its Pods (so status can name a failing pod,
    container and cause) and the Nodes its labelSelector matches."""
    meta = parent.get("metadata") or {}
    claim = settings.claim_api
    rules: list[Obj] = [{
        "apiVersion": claim.api_version, "resource": claim.resource,
        "labelSelector": {"matchLabels": {nodesel.WS_LABEL: meta["name"],
                                          nodesel.WS_NS_LABEL: meta.get("namespace", "")}}}]
    selector = (parent.get("resource") or {}).get("labelSelector")
    if isinstance(selector, Mapping):
        sel = {k: selector[k] for k in ("matchLabels", "matchExpressions") if selector.get(k)}
        rules.append({"apiVersion": "v1", "resource": "nodes", "labelSelector": sel})
    rules.append({"apiVersion": "v1", "resource": "pods", "namespace": meta.get("namespace", ""),
                  "labelSelector": {"matchLabels": {WS_LABEL: meta["name"]}}})
    return {"relatedResources": rules}


# -- helpers ---------------------------------------------------------------------------------
def _claim_failure(claims: Iterable[Obj]) -> Optional[str]:
    for claim in sorted(claims, key=lambda c: c["metadata"]["name"]):
        for c in (claim.get("status") or {}).get("conditions") or []:
            if c.get("type") in ("Launched", "MachineLaunched") and c.get("status") == FALSE:
                return f"node claim {claim['metadata']['name']} failed to launch: {c.get('message') or c.get('reason')}"
    return None


def _ready_replicas(dep: Optional[Obj]) -> int:
    """Ready replicas of the current pod template: none while the controller has not seen the
    latest generation, and only updated ones during a rollout."""
    status = (dep or {}).get("status") or {}
    if int(status.get("observedGeneration") or 0) < int((dep or {}).get("metadata", {}).get("generation") or 0):
        return 0
    ready = int(status.get("readyReplicas") or 0)
    updated = status.get("updatedReplicas")
    return ready if updated is None else min(ready, int(updated))


def _deployment_failure(dep: Optional[Obj]) -> Optional[Cond]:
    for c in ((dep or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Progressing", "ReplicaFailure") and \
                (c.get("status") == FALSE if c["type"] == "Progressing" else c.get("status") == TRUE):
            return Cond("InferenceReady", FALSE, c.get("reason") or "WorkspaceInferenceStatusFailed",
                        f"Deployment {dep['metadata']['name']}: {c.get('message', '')}")
    return None


# -- sync --------------------------------------------------------------------------------------
def sync(request: Obj, settings: Settings, now: str) -> Obj:
    parent = request["parent"]
    meta = parent["metadata"]
    ns, name = meta.get("namespace", ""), meta["name"]
    generation = int(meta.get("generation") or 0)
    old_status = parent.get("status") or {}
    observed_conditions = old_status.get("conditions") or []
    previous_nodes = [n for n in old_status.get("workerNodes") or [] if isinstance(n, str)]
    children = request.get("children") or {}
    related = request.get("related") or {}
    pods = [p for p in (related.get(POD_KEY) or {}).values() if (p.get("metadata") or {}).get("namespace", ns) == ns]

    checked = validate_workspace({k: v for k, v in parent.items() if k != "status"})
    errors = checked.errors
    if errors:
        message = "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors)
        conds = [Cond(t, FALSE, INVALID_SPEC, message) for t in ("ResourceReady", "WorkspaceReady")]
        conds.append(Cond("JobStarted" if parent.get("tuning") else "InferenceReady", FALSE, INVALID_SPEC, message))
        status = {"workerNodes": sorted(previous_nodes), "conditions": render(conds, observed_conditions, now, generation)}
        return {"status": status, "children": last_applied_children(children)}

    facts = checked.facts

    # -- resources: claims and nodes
    nodes = list((related.get(NODE_KEY) or {}).values())
    claims = list((related.get(settings.claim_api.map_key) or {}).values())
    selected = nodesel.select_nodes(nodes, namespace=ns, name=name, count=facts.node_count,
                                    instance_type=facts.instance_type, match_labels=facts.match_labels,
                                    preferred=list(facts.preferred_nodes), previous=previous_nodes,
                                    needs_gpu=facts.gpus_per_node > 0)
    resource_ok = len(selected) >= facts.node_count
    failure = None if resource_ok else _claim_failure(claims)
    if resource_ok:
        resource = Cond("ResourceReady", TRUE, "workspaceResourceStatusSuccess", "workspace resource is ready")
    elif failure:
        resource = Cond("ResourceReady", FALSE, "workspaceResourceStatusFailed", failure)
    else:
        pending = sum(1 for c in claims if not any(x.get("type") == "Ready" and x.get("status") == TRUE
                                                   for x in (c.get("status") or {}).get("conditions") or []))
        extra = f", {pending} node claim{'s' if pending != 1 else ''} pending" if pending else ""
        resource = Cond("ResourceReady", FALSE, "NodesPending", f"{len(selected)} of {facts.node_count} nodes ready{extra}")

    observed = {(g, k): o for g, m in children.items() for k, o in (m or {}).items()}
    have_children = bool(observed)
    worker_nodes = tuple(selected) if resource_ok else tuple(sorted(previous_nodes))
    desired: list[Obj] = []
    reported: list[Cond] = []  # conditions that do not gate readiness or resyncs

    job = observed.get((JOB_KEY, f"{ns}/{name}"))  # tuning workspaces only; None otherwise
    if facts.is_tuning:
        tuning_spec = facts.workspace.tuning
        plan = TuningPlan(facts=facts, runtime_image=settings.runtime_image,
                          default_config=None if tuning_spec.config else
                          presets.default_training_config(tuning_spec.method))
        if resource_ok or have_children:
            desired = tuning.build(plan)
        conds = [resource, *_tuning_conditions(job, resource, pod_problem(pods, "JobStarted"))]
    else:
        plan = ServingPlan(facts=facts, worker_nodes=worker_nodes, runtime_image=settings.runtime_image)
        if resource_ok or have_children:
            desired = inference.build(plan)
        infer = _inference_condition(inference.deployment_replicas(plan) if desired else {}, observed, ns, resource,
                                     pod_problem(pods, "InferenceReady"))
        conds = [resource, infer, combined("WorkspaceReady", [resource, infer], "workspaceReady", "workspace is ready")]
        if desired and facts.adapters and plan.template is None:
            # Our runtime's report on its pods; informational: the older set still serves, so InferenceReady
            # and WorkspaceReady stay as they are, and a pod's change (a related object) brings the next sync.
            reported.append(adapters_condition(pods))

    status = {"workerNodes": sorted(selected),
              "conditions": render(conds + reported, observed_conditions, now, generation)}
    reply: Obj = {"status": status, "children": desired}
    if not (all(c.ok for c in conds) or _tuning_finished(job)):
        reply["resyncAfterSeconds"] = settings.pending_resync_seconds
    return reply


def _job_final(job: Optional[Obj]) -> dict[str, Obj]:
    """The Job's terminal conditions that are True (Complete, Failed)."""
    return {c.get("type"): c for c in ((job or {}).get("status") or {}).get("conditions") or []
            if c.get("status") == TRUE and c.get("type") in ("Complete", "Failed")}


def _tuning_finished(job: Optional[Obj]) -> bool:
    return bool(_job_final(job))


def _inference_condition(replicas: Mapping[str, int], observed: Mapping[tuple[str, str], Obj], ns: str,
                         resource: Cond, pod_failure: Optional[Cond]) -> Cond:
    """`replicas`: the Deployments this sync wants (name -> replicas), empty while waiting for nodes."""
    if not replicas:
        return Cond("InferenceReady", FALSE, "WaitingForResources", f"waiting for nodes: {resource.message}")
    if pod_failure is not None:  # a pod that cannot run outranks replica counts (never Ready while one crash-loops)
        return pod_failure
    ready = wanted = 0
    for name, want in sorted(replicas.items()):
        obs = observed.get((DEPLOYMENT_KEY, f"{ns}/{name}"))
        if (failed := _deployment_failure(obs)) is not None:
            return failed
        wanted += want
        ready += min(_ready_replicas(obs), want)
    if ready >= wanted:
        return Cond("InferenceReady", TRUE, "WorkspaceInferenceStatusSuccess", "Inference has been deployed successfully")
    return Cond("InferenceReady", FALSE, "WorkspaceInferenceStatusPending", f"{ready} of {wanted} replicas ready")


def _tuning_conditions(job: Optional[Obj], resource: Cond, pod_failure: Optional[Cond]) -> list[Cond]:
    if job is None:
        why = Cond("JobStarted", FALSE, "WaitingForResources", f"waiting for nodes: {resource.message}") \
            if not resource.ok else Cond("JobStarted", FALSE, "JobPending", "creating the tuning job")
        pending = Cond("WorkspaceSucceeded", FALSE, "workspacePending", "workspace has not completed, the tuning job does not exist yet")
        return [why, pending, Cond("WorkspaceReady", FALSE, why.reason, why.message)]
    st = job.get("status") or {}
    started = Cond("JobStarted", TRUE, "WorkspaceTuningJobStatusStarted", "Tuning job has started")
    final = _job_final(job)
    if "Complete" in final:
        done = Cond("WorkspaceSucceeded", TRUE, "workspaceSucceeded", "workspace succeeds")
    elif "Failed" in final:
        c = final["Failed"]
        why = c.get("message") or "the tuning job failed"
        done = Cond("WorkspaceSucceeded", FALSE, c.get("reason") or "workspaceFailed",
                    f"{why}; {pod_failure.message}" if pod_failure else why)
    elif pod_failure is not None:  # the Job exists but its pod cannot run: not started, not succeeding
        started = pod_failure
        done = Cond("WorkspaceSucceeded", FALSE, pod_failure.reason, pod_failure.message)
    else:
        done = Cond("WorkspaceSucceeded", FALSE, "workspacePending",
                    f"workspace has not completed, tuning job has {int(st.get('active') or 0)} active pod, "
                    f"{int(st.get('ready') or 0)} ready pod")
    return [started, done, Cond("WorkspaceReady", done.status, done.reason, done.message)]
