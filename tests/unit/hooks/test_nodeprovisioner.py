"""The NodeProvisioner sync core: claims per workspace, reuse of existing nodes, stability, scale."""
from __future__ import annotations

import copy
import json
import re
import time

from contract.workspace import claim_name
from hooks.core import nodeprovisioner
from hooks.core.protocol import NodeProvisionerSyncRequest
from hooks.core.settings import CLAIM_APIS, Settings
from metacontroller.api import decode

T0 = "2026-01-01T00:00:00Z"
NODECLAIM = Settings(claim_api=CLAIM_APIS["nodeclaim"])


def sync(req, now=T0, settings=NODECLAIM):
    """Through the one decoding step, as the route does."""
    return nodeprovisioner.sync(decode(NodeProvisionerSyncRequest, json.dumps(req).encode()),
                                settings, now)


def ws(name, ns="default", count=1, labels=None, preset="phi-3-mini-4k-instruct", sku="Standard_NC6s_v3"):
    return {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": name, "namespace": ns},
            "resource": {"count": count, "instanceType": sku, "labelSelector": {"matchLabels": labels or {"app": name}}},
            "inference": {"preset": {"name": preset}}}


def node(name, labels):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"nvidia.com/gpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]}}


def request(workspaces, nodes=(), children=None):
    return {"parent": {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner",
                       "metadata": {"name": "default", "generation": 1}, "spec": {}},
            "children": children or {},
            "related": {"Workspace.kaito.sh/v1alpha1": {f"{w['metadata']['namespace']}/{w['metadata']['name']}": w
                                                        for w in workspaces},
                        "Node.v1": {n["metadata"]["name"]: n for n in nodes}}}


def test_claim_names_are_valid_agent_pool_names_and_stable():
    names = {claim_name(f"ns{i}", "w", j) for i in range(100) for j in range(3)}
    assert len(names) == 300
    assert all(re.fullmatch(r"[a-z][a-z0-9]{0,10}", n) and len(n) == 11 for n in names)
    assert claim_name("a", "b", 0) == claim_name("a", "b", 0)


def test_one_claim_per_missing_node_in_both_apis():
    reply = sync(request([ws("a", count=2)]))
    assert [c["kind"] for c in reply["children"]] == ["NodeClaim", "NodeClaim"]
    claim = reply["children"][0]
    assert claim["metadata"]["labels"]["karpenter.sh/nodepool"] == "kaito"
    assert claim["spec"]["nodeClassRef"] == {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"}
    assert claim["spec"]["resources"]["requests"]["storage"].endswith("Gi")
    assert reply["status"]["workspaces"] == [{"namespace": "default", "name": "a", "claims": 2, "ready": 0}]
    machines = sync(request([ws("a")]), settings=Settings(claim_api=CLAIM_APIS["machine"]))["children"]
    assert machines[0]["kind"] == "Machine" and machines[0]["apiVersion"] == "karpenter.sh/v1alpha5"


def test_existing_nodes_are_reused_once_and_not_shared():
    labels = {"pool": "shared", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"}
    nodes = [node("byo-1", labels)]
    reply = sync(request([ws("a", labels={"pool": "shared"}), ws("b", labels={"pool": "shared"})], nodes))
    owners = [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]]
    assert owners == ["b"]  # a (first in order) took the node, b needs a claim
    claimed = node("theirs", {**labels, "kaito.sh/workspace": "x", "kaito.sh/workspacenamespace": "default"})
    reply = sync(request([ws("c", labels={"pool": "shared"})], [claimed]))
    assert len(reply["children"]) == 1


def test_invalid_and_deleted_workspaces_get_no_new_claims():
    dead = ws("gone")
    dead["metadata"]["deletionTimestamp"] = T0
    reply = sync(request([ws("big", preset="falcon-40b-instruct"), ws("x", preset="nope"), dead]))
    assert reply["children"] == []


def test_same_world_same_reply():
    req = request([ws(f"w{i}", ns=f"n{i % 3}", count=1 + i % 2) for i in range(30)])
    first = sync(copy.deepcopy(req))
    req["parent"]["status"] = first["status"]
    assert sync(req, "2030-01-01T00:00:00Z") == first


def test_scales_linearly_to_thousands_of_workspaces():
    # Loose bound only to catch quadratic blow-ups; the real figures live in bench/hooks.
    workspaces = [ws(f"w{i}", ns=f"n{i % 50}") for i in range(5000)]
    nodes = [node(f"byo-{i}", {"app": f"w{i}", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"})
             for i in range(0, 5000, 2)]
    start = time.perf_counter()
    reply = sync(request(workspaces, nodes))
    assert time.perf_counter() - start < 10
    assert len(reply["children"]) == 2500


def test_in_expressions_count_as_labels_for_claims():
    w = ws("expr")
    w["resource"]["labelSelector"] = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu-a"]}]}
    (claim,) = sync(request([w]))["children"]
    assert claim["metadata"]["labels"]["pool"] == "gpu-a"
    byo = node("byo", {"pool": "gpu-a", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"})
    assert sync(request([w], [byo]))["children"] == []


def _observed(reply):
    """The reply's claims as Metacontroller would hand them back next time (with last-applied)."""
    from metacontroller.apply import with_last_applied
    return {"NodeClaim.karpenter.sh/v1": {c["metadata"]["name"]: with_last_applied(c) for c in reply["children"]}}


def test_invalid_workspace_keeps_its_claims_as_last_applied_and_status_says_why():
    first = sync(request([ws("a", count=2), ws("b")]))
    broken = ws("a", count=2)
    broken["inference"] = None  # what workspace/sync reports as InvalidSpec
    nulled = ws("b")
    nulled["resource"] = None
    reply = sync(request([broken, nulled], children=_observed(first)))
    by_claim = lambda r: sorted(r["children"], key=lambda c: c["metadata"]["name"])  # noqa: E731
    assert by_claim(reply) == by_claim(first)
    by_name = {w["name"]: w for w in reply["status"]["workspaces"]}
    assert by_name["a"]["claims"] == 2 and "Inference or Tuning" in by_name["a"]["invalid"]
    assert "resource" in by_name["b"]["invalid"]
    valid = next(c for c in reply["status"]["conditions"] if c["type"] == "WorkspacesValid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidWorkspaces"
    assert "default/a" in valid["message"] and "default/b" in valid["message"]
    # Fixed again: the same claims, and the condition turns True.
    again = sync(request([ws("a", count=2), ws("b")], children=_observed(first)))
    assert by_claim(again) == by_claim(first)
    assert {c["type"]: c["status"] for c in again["status"]["conditions"]}["WorkspacesValid"] == "True"


def _post(body):
    from hooks.shell.app import app
    r = app.test_client().post("/nodeprovisioner/sync", data=json.dumps(body), content_type="application/json")
    return r.status_code, r.get_json()


def test_malformed_requests_are_422_naming_the_path_never_a_200():
    good = request([ws("a")])
    cases = {}
    cases["related missing"] = {k: v for k, v in good.items() if k != "related"}, "related: Field required"
    cases["related null"] = {**good, "related": None}, "related:"
    cases["group null"] = {**good, "related": {**good["related"], "Workspace.kaito.sh/v1alpha1": None}}, \
        "related['Workspace.kaito.sh/v1alpha1']"
    cases["group missing"] = {**good, "related": {"Node.v1": {}}}, "group 'Workspace.kaito.sh/v1alpha1' is missing"
    huge = copy.deepcopy(good)
    huge["related"]["Workspace.kaito.sh/v1alpha1"]["default/a"]["metadata"]["name"] = 10 ** 30
    cases["name not a string"] = huge, "metadata.name: Input should be a valid string"
    no_ns = ws("a")
    del no_ns["metadata"]["namespace"]
    cases["namespace missing"] = {**good, "related": {**good["related"], "Workspace.kaito.sh/v1alpha1": {"a": no_ns}}}, \
        "metadata.namespace: a Workspace is namespaced"
    for label, (body, path) in cases.items():
        status, reply = _post(body)
        assert status == 422 and path in reply["error"], (label, status, reply)


def test_the_overlay_decides_the_claim_api_and_a_different_spec_is_a_false_condition():
    req = request([ws("a")])
    req["parent"]["spec"]["claimApi"] = "machine"
    reply = sync(req)  # this installation emits NodeClaims (the overlay's KAITO_CLAIM_API)
    assert [c["kind"] for c in reply["children"]] == ["NodeClaim"] and reply["status"]["claimApi"] == "nodeclaim"
    cond = next(c for c in reply["status"]["conditions"] if c["type"] == "ClaimApi")
    assert cond["status"] == "False" and cond["reason"] == "ClaimApiMismatch"
    assert "machine" in cond["message"] and "nodeclaim" in cond["message"]
    req["parent"]["spec"]["claimApi"] = "nodeclaim"
    cond = next(c for c in sync(req)["status"]["conditions"] if c["type"] == "ClaimApi")
    assert cond["status"] == "True"


def test_pending_resync_comes_from_settings():
    slow = Settings(claim_api=CLAIM_APIS["nodeclaim"], pending_resync_seconds=42.0)
    assert sync(request([ws("a")]), settings=slow)["resyncAfterSeconds"] == 42.0


def test_no_claims_for_a_workspace_the_sync_would_refuse():
    """Validation is the Workspace sync's: a spec it refuses (here an adapter image that cannot be
    pulled, or an instance type KAITO does not accept) gets no GPU node, a fixed one does."""
    bad_image = ws("img")
    bad_image["inference"]["adapters"] = [{"source": {"name": "a", "image": "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"}}]
    template = ws("tpl", sku="m5.large")
    del template["inference"]["preset"]
    template["inference"]["template"] = {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    reply = sync(request([bad_image, template, ws("ok")]))
    assert [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]] == ["ok"]
    bad_image["inference"]["adapters"][0]["source"]["image"] = "myacr.azurecr.io/adapter:0.0.1"
    reply = sync(request([bad_image]))
    assert [c["metadata"]["labels"]["kaito.sh/workspace"] for c in reply["children"]] == ["img"]
