"""Scriptable stand-ins for the cluster's own controllers, following the real ones' status fields.

- `KarpenterStandIn`: Machine (karpenter.sh/v1alpha5, knative conditions MachineLaunched,
  MachineRegistered, MachineInitialized, Ready) and NodeClaim (karpenter.sh/v1, Launched,
  Registered, Initialized, Ready); registers a Node carrying the claim's labels, the instance-type
  label, its taints and `nvidia.com/gpu` capacity; or fails the launch like gpu-provisioner.
- `DeploymentStandIn`: schedules replicas onto Ready nodes that the pod template fits (affinity,
  taints, GPU capacity) and sets replicas/readyReplicas/availableReplicas and conditions.
- `JobStandIn`: starts a Job once its pod fits a node, then completes or fails it.
Each `tick()` advances the world by one step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from .api import Obj
from .cluster import Cluster
from .selectors import node_affinity_matches, tolerates

UNAVAILABLE = "all requested instance types were unavailable during launch"
CLAIM_KINDS = (("karpenter.sh/v1alpha5", "Machine"), ("karpenter.sh/v1", "NodeClaim"))


def _cond(kind: str, ctype: str, status: str, now: str, reason: str = "", message: str = "") -> Obj:
    """Machine: knative apis.Condition (reason/message optional); NodeClaim: metav1-style (both set)."""
    c = {"type": ctype, "status": status, "lastTransitionTime": now}
    if reason or kind == "NodeClaim":
        c["reason"] = reason or ctype
    if message or kind == "NodeClaim":
        c["message"] = message
    return c


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def condition_true(obj: Obj, ctype: str) -> bool:
    return _conditions(obj).get(ctype, {}).get("status") == "True"


def _gpu_request(pod_spec: Obj) -> int:
    total = 0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        raw = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get("nvidia.com/gpu")
        total += int(raw or 0)
    return total


@dataclass
class KarpenterStandIn:
    """`sku_gpus(instance_type) -> GPUs per node`; instance types in `unavailable` fail to launch."""
    cluster: Cluster
    sku_gpus: Callable[[str], int]
    unavailable: set[str] = field(default_factory=set)

    @staticmethod
    def _names(kind: str) -> tuple[str, str, str, str]:
        if kind == "Machine":
            return "MachineLaunched", "MachineRegistered", "MachineInitialized", "karpenter.sh/provisioner-name"
        return "Launched", "Registered", "Initialized", "karpenter.sh/nodepool"

    @staticmethod
    def instance_type(claim: Obj) -> str:
        for req in (claim.get("spec") or {}).get("requirements") or []:
            if req.get("key") == "node.kubernetes.io/instance-type" and req.get("values"):
                return req["values"][0]
        return ""

    def tick(self) -> None:
        now = self.cluster.clock()
        for api_version, kind in CLAIM_KINDS:
            for claim in self.cluster.list(api_version, kind):
                self._advance(claim, kind, now)

    def _advance(self, claim: Obj, kind: str, now: str) -> None:
        launched, registered, initialized, pool_label = self._names(kind)
        conds = _conditions(claim)
        status = dict(claim.get("status") or {})
        sku = self.instance_type(claim)
        if launched not in conds:
            if sku in self.unavailable:
                conds[launched] = _cond(kind, launched, "False", now, "LaunchFailed", UNAVAILABLE)
                conds["Ready"] = _cond(kind, "Ready", "False", now, "LaunchFailed", UNAVAILABLE)
            else:
                conds[launched] = _cond(kind, launched, "True", now)
                conds["Ready"] = _cond(kind, "Ready", "Unknown", now, "NotRegistered", "Node not registered")
        elif conds[launched]["status"] == "True" and registered not in conds:
            node_name = f"aks-{claim['metadata']['name']}-vmss000000"
            self._register_node(claim, node_name, sku, pool_label)
            status["nodeName"] = node_name
            status["providerID"] = f"azure:///subscriptions/sub/vmss/{claim['metadata']['name']}/0"
            status["capacity"] = self._capacity(sku)
            status["allocatable"] = self._capacity(sku)
            conds[registered] = _cond(kind, registered, "True", now)
        elif registered in conds and initialized not in conds:
            conds[initialized] = _cond(kind, initialized, "True", now)
            conds["Ready"] = _cond(kind, "Ready", "True", now)
        else:
            return
        status["conditions"] = [conds[k] for k in sorted(conds)]
        self.cluster.update_status(claim, status)

    def _capacity(self, sku: str) -> Obj:
        cap = {"cpu": "6", "memory": "112Gi", "pods": "110", "ephemeral-storage": "128Gi"}
        gpus = self.sku_gpus(sku)
        if gpus:
            cap["nvidia.com/gpu"] = str(gpus)
        return cap

    def _register_node(self, claim: Obj, name: str, sku: str, pool_label: str) -> None:
        labels = dict(claim["metadata"].get("labels") or {})
        labels.pop("controller-uid", None)
        labels.update({"node.kubernetes.io/instance-type": sku, "kubernetes.io/hostname": name,
                       "kubernetes.io/os": "linux", "kaito.sh/machine-type": "gpu" if "Standard_N" in sku else "cpu"})
        labels.setdefault(pool_label, "kaito" if pool_label == "karpenter.sh/nodepool" else "default")
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "ownerReferences": [{"apiVersion": claim["apiVersion"], "kind": claim["kind"],
                                                  "name": claim["metadata"]["name"],
                                                  "uid": claim["metadata"]["uid"], "blockOwnerDeletion": True}]},
                "spec": {"taints": list((claim.get("spec") or {}).get("taints") or [])}}
        if self.cluster.get("v1", "Node", name) is None:
            created = self.cluster.create(node)
            cap = self._capacity(sku)
            self.cluster.update_status(created, {
                "capacity": cap, "allocatable": cap,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": self.cluster.clock(),
                                "lastTransitionTime": self.cluster.clock()}]})


def add_node(cluster: Cluster, name: str, labels: Mapping[str, str], gpus: int, *, ready: bool = True,
             taints: Optional[list[Obj]] = None) -> Obj:
    """Create a pre-existing (BYO) Node with GPU capacity, as a cluster admin would have."""
    node = cluster.create({"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": name, "labels": dict(labels)},
                           "spec": {"taints": taints or []}})
    cap = {"cpu": "6", "memory": "112Gi", "pods": "110"}
    if gpus:
        cap["nvidia.com/gpu"] = str(gpus)
    return cluster.update_status(node, {"capacity": cap, "allocatable": cap, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady",
         "message": "", "lastHeartbeatTime": cluster.clock(), "lastTransitionTime": cluster.clock()}]})


class _Scheduler:
    """GPU bookkeeping for one tick: which Ready nodes still have room for a pod."""

    def __init__(self, cluster: Cluster) -> None:
        self.nodes = [n for n in cluster.list("v1", "Node") if condition_true(n, "Ready")]
        self.free = {n["metadata"]["name"]: int(((n.get("status") or {}).get("allocatable") or {})
                                                .get("nvidia.com/gpu", 0)) for n in self.nodes}
        self.pods = {n["metadata"]["name"]: 0 for n in self.nodes}

    def place(self, pod_spec: Obj) -> Optional[str]:
        need = _gpu_request(pod_spec)
        for node in self.nodes:
            name = node["metadata"]["name"]
            if self.free[name] < need or (need == 0 and self.pods[name] >= 110):
                continue
            if node_affinity_matches(pod_spec, node) and tolerates(pod_spec, node):
                self.free[name] -= need
                self.pods[name] += 1
                return name
        return None


@dataclass
class WorkloadStandIn:
    """Deployment and Job controllers together, sharing one scheduler per tick.

    Script it with `hold` (Deployments that never get ready), `job_outcomes[(ns, name)]` =
    "succeed" | "fail", and `job_run_ticks` (ticks a Job stays active before finishing).
    """
    cluster: Cluster
    hold: set[tuple[str, str]] = field(default_factory=set)
    job_outcomes: dict[tuple[str, str], str] = field(default_factory=dict)
    job_run_ticks: int = 1
    _job_ticks: dict[str, int] = field(default_factory=dict)

    def tick(self) -> None:
        sched = _Scheduler(self.cluster)
        for dep in self.cluster.list("apps/v1", "Deployment"):
            self._deployment(dep, sched)
        for job in self.cluster.list("batch/v1", "Job"):
            self._job(job, sched)

    def _deployment(self, dep: Obj, sched: _Scheduler) -> None:
        meta = dep["metadata"]
        replicas = dep["spec"].get("replicas", 1)
        pod_spec = dep["spec"]["template"]["spec"]
        placed = 0
        if (meta.get("namespace", ""), meta["name"]) not in self.hold:
            while placed < replicas and sched.place(pod_spec):
                placed += 1
        now = self.cluster.clock()
        status: Obj = {"observedGeneration": meta["generation"], "replicas": replicas, "updatedReplicas": replicas}
        if placed:
            status["readyReplicas"] = placed
            status["availableReplicas"] = placed
        if replicas - placed:
            status["unavailableReplicas"] = replicas - placed
        available = placed >= replicas
        status["conditions"] = [
            {"type": "Available", "status": "True" if available else "False",
             "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available else
             "Deployment does not have minimum availability.",
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True",
             "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
             "message": f'ReplicaSet "{meta["name"]}-rs" is progressing.',
             "lastUpdateTime": now, "lastTransitionTime": now}]
        old = dict(dep.get("status") or {})
        if {k: v for k, v in old.items() if k != "conditions"} != {k: v for k, v in status.items() if k != "conditions"}:
            self.cluster.update_status(dep, status)

    def _job(self, job: Obj, sched: _Scheduler) -> None:
        meta = job["metadata"]
        status = dict(job.get("status") or {})
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions") or []):
            return
        now = self.cluster.clock()
        uid = meta["uid"]
        if uid not in self._job_ticks:
            if not sched.place(job["spec"]["template"]["spec"]):
                return
            self._job_ticks[uid] = 0
            status.update({"startTime": now, "active": 1, "ready": 1})
        elif self._job_ticks[uid] >= self.job_run_ticks:
            outcome = self.job_outcomes.get((meta.get("namespace", ""), meta["name"]), "succeed")
            status.pop("active", None)
            status["ready"] = 0
            if outcome == "succeed":
                status.update({"succeeded": 1, "completionTime": now, "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods",
                     "lastProbeTime": now, "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods",
                     "lastProbeTime": now, "lastTransitionTime": now}]})
            else:
                status.update({"failed": job["spec"].get("backoffLimit", 6) + 1, "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit",
                     "lastProbeTime": now, "lastTransitionTime": now},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit",
                     "lastProbeTime": now, "lastTransitionTime": now}]})
        else:
            sched.place(job["spec"]["template"]["spec"])
        self._job_ticks[uid] = self._job_ticks.get(uid, 0) + 1
        self.cluster.update_status(job, status)
