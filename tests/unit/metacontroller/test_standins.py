from metacontroller.cluster import Cluster
from metacontroller.standins import UNAVAILABLE, KarpenterStandIn, WorkloadStandIn, add_node

CLAIM = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
         "metadata": {"name": "wsabc", "labels": {"kaito.sh/workspace": "w", "apps": "x"}},
         "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                  "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                    "values": ["Standard_NC12s_v3"]}]}}


def test_karpenter_launches_registers_and_readies_a_claim_with_a_gpu_node():
    cluster = Cluster()
    cluster.create(CLAIM)
    karpenter = KarpenterStandIn(cluster, lambda sku: 2)
    for _ in range(3):
        karpenter.tick()
    claim = cluster.get("karpenter.sh/v1", "NodeClaim", "wsabc")
    conds = {c["type"]: c["status"] for c in claim["status"]["conditions"]}
    assert conds == {"Launched": "True", "Registered": "True", "Initialized": "True", "Ready": "True"}
    node = cluster.get("v1", "Node", claim["status"]["nodeName"])
    assert node["metadata"]["labels"]["apps"] == "x"
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC12s_v3"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "2"
    cluster.delete("karpenter.sh/v1", "NodeClaim", "wsabc")
    assert cluster.get("v1", "Node", claim["status"]["nodeName"]) is None  # owned by its claim


def test_karpenter_fails_unavailable_instance_types():
    cluster = Cluster()
    cluster.create(CLAIM)
    KarpenterStandIn(cluster, lambda sku: 2, {"Standard_NC12s_v3"}).tick()
    launched = cluster.get("karpenter.sh/v1", "NodeClaim", "wsabc")["status"]["conditions"][0]
    assert launched["type"] == "Launched" and launched["status"] == "False" and launched["message"] == UNAVAILABLE


def _deployment(tolerate: bool) -> dict:
    spec = {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    if tolerate:
        spec["tolerations"] = [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
            "spec": {"replicas": 2, "template": {"spec": spec}}}


def test_deployments_become_ready_only_where_pods_fit():
    cluster = Cluster()
    add_node(cluster, "n1", {}, gpus=1, taints=[{"key": "sku", "value": "gpu", "effect": "NoSchedule"}])
    cluster.create(_deployment(tolerate=False))
    WorkloadStandIn(cluster).tick()
    assert "readyReplicas" not in cluster.get("apps/v1", "Deployment", "d", "n")["status"]
    cluster.delete("apps/v1", "Deployment", "d", "n")
    cluster.create(_deployment(tolerate=True))
    WorkloadStandIn(cluster).tick()
    status = cluster.get("apps/v1", "Deployment", "d", "n")["status"]
    assert status["readyReplicas"] == 1 and status["unavailableReplicas"] == 1  # one GPU, two pods


def test_jobs_start_then_complete_or_fail():
    cluster = Cluster()
    add_node(cluster, "n1", {}, gpus=2)
    for name in ("ok", "bad"):
        cluster.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "n"},
                        "spec": {"backoffLimit": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}})
    jobs = WorkloadStandIn(cluster, job_outcomes={("n", "bad"): "fail"})
    jobs.tick()
    assert cluster.get("batch/v1", "Job", "ok", "n")["status"]["active"] == 1
    jobs.tick()
    ok, bad = (cluster.get("batch/v1", "Job", n, "n")["status"] for n in ("ok", "bad"))
    assert ok["succeeded"] == 1 and any(c["type"] == "Complete" for c in ok["conditions"])
    assert bad["failed"] == 3 and [c["reason"] for c in bad["conditions"] if c["type"] == "Failed"] == ["BackoffLimitExceeded"]
