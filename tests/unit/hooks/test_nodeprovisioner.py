"""The NodeProvisioner sync core: claims per workspace, reuse of existing nodes, stability, scale."""
from __future__ import annotations

import copy
import re
import time

from hooks import nodeprovisioner

T0 = "2026-01-01T00:00:00Z"


def ws(name, ns="default", count=1, labels=None, preset="phi-3-mini-4k-instruct", sku="Standard_NC6s_v3"):
    return {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": name, "namespace": ns},
            "resource": {"count": count, "instanceType": sku, "labelSelector": {"matchLabels": labels or {"app": name}}},
            "inference": {"preset": {"name": preset}}}


def node(name, labels):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"nvidia.com/gpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]}}


def request(workspaces, nodes=(), claim_api="nodeclaim", children=None):
    return {"parent": {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner",
                       "metadata": {"name": "default", "generation": 1}, "spec": {"claimApi": claim_api}},
            "children": children or {},
            "related": {"Workspace.kaito.sh/v1alpha1": {f"{w['metadata']['namespace']}/{w['metadata']['name']}": w
                                                        for w in workspaces},
                        "Node.v1": {n["metadata"]["name"]: n for n in nodes}}}


def test_claim_names_are_valid_agent_pool_names_and_stable():
    names = {nodeprovisioner.claim_name(f"ns{i}", "w", j) for i in range(100) for j in range(3)}
    assert len(names) == 300
    assert all(re.fullmatch(r"[a-z][a-z0-9]{0,10}", n) and len(n) == 11 for n in names)
    assert nodeprovisioner.claim_name("a", "b", 0) == nodeprovisioner.claim_name("a", "b", 0)


def test_one_claim_per_missing_node_in_both_apis():
    reply = nodeprovisioner.sync(request([ws("a", count=2)]), T0)
    assert [c["kind"] for c in reply["children"]] == ["NodeClaim", "NodeClaim"]
    claim = reply["children"][0]
    assert claim["metadata"]["labels"]["karpenter.sh/nodepool"] == "kaito"
    assert claim["spec"]["nodeClassRef"] == {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"}
    assert claim["spec"]["resources"]["requests"]["storage"].endswith("Gi")
    assert reply["status"]["workspaces"] == [{"namespace": "default", "name": "a", "claims": 2, "ready": 0}]
    machines = nodeprovisioner.sync(request([ws("a")], claim_api="machine"), T0)["children"]
    assert machines[0]["kind"] == "Machine" and machines[0]["apiVersion"] == "karpenter.sh/v1alpha5"


def test_existing_nodes_are_reused_once_and_not_shared():
    labels = {"pool": "shared", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"}
    nodes = [node("byo-1", labels)]
    reply = nodeprovisioner.sync(request([ws("a", labels={"pool": "shared"}), ws("b", labels={"pool": "shared"})],
                                         nodes), T0)
    owners = [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]]
    assert owners == ["b"]  # a (first in order) took the node, b needs a claim
    claimed = node("theirs", {**labels, "kaito.sh/workspace": "x", "kaito.sh/workspacenamespace": "default"})
    reply = nodeprovisioner.sync(request([ws("c", labels={"pool": "shared"})], [claimed]), T0)
    assert len(reply["children"]) == 1


def test_invalid_and_deleted_workspaces_get_no_new_claims():
    dead = ws("gone")
    dead["metadata"]["deletionTimestamp"] = T0
    reply = nodeprovisioner.sync(request([ws("big", preset="falcon-40b-instruct"), ws("x", preset="nope"), dead]), T0)
    assert reply["children"] == []


def test_same_world_same_reply():
    req = request([ws(f"w{i}", ns=f"n{i % 3}", count=1 + i % 2) for i in range(30)])
    first = nodeprovisioner.sync(copy.deepcopy(req), T0)
    req["parent"]["status"] = first["status"]
    assert nodeprovisioner.sync(req, "2030-01-01T00:00:00Z") == first


def test_scales_linearly_to_thousands_of_workspaces():
    # Loose bound only to catch quadratic blow-ups; the real figures live in bench/hooks.
    workspaces = [ws(f"w{i}", ns=f"n{i % 50}") for i in range(5000)]
    nodes = [node(f"byo-{i}", {"app": f"w{i}", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"})
             for i in range(0, 5000, 2)]
    start = time.perf_counter()
    reply = nodeprovisioner.sync(request(workspaces, nodes), T0)
    assert time.perf_counter() - start < 10
    assert len(reply["children"]) == 2500


def test_in_expressions_count_as_labels_for_claims():
    w = ws("expr")
    w["resource"]["labelSelector"] = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu-a"]}]}
    (claim,) = nodeprovisioner.sync(request([w]), T0)["children"]
    assert claim["metadata"]["labels"]["pool"] == "gpu-a"
    byo = node("byo", {"pool": "gpu-a", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"})
    assert nodeprovisioner.sync(request([w], [byo]), T0)["children"] == []


def test_no_claims_for_a_workspace_the_sync_would_refuse():
    """Validation is the Workspace sync's: a spec it refuses (here an adapter image that cannot be
    pulled, or an instance type KAITO does not accept) gets no GPU node, a fixed one does."""
    bad_image = ws("img")
    bad_image["inference"]["adapters"] = [{"source": {"name": "a", "image": "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"}}]
    template = ws("tpl", sku="m5.large")
    del template["inference"]["preset"]
    template["inference"]["template"] = {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    reply = nodeprovisioner.sync(request([bad_image, template, ws("ok")]), T0)
    assert [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]] == ["ok"]
    bad_image["inference"]["adapters"][0]["source"]["image"] = "myacr.azurecr.io/adapter:0.0.1"
    reply = nodeprovisioner.sync(request([bad_image]), T0)
    assert [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]] == ["img"]
