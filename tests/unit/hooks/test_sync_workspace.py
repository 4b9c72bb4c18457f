"""The Workspace sync core as a pure function: no HTTP, no emulator."""
from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
import yaml

from hooks.core import sync_workspace
from hooks.core.settings import CLAIM_APIS, Settings

SETTINGS = Settings(claim_api=CLAIM_APIS["nodeclaim"], runtime_image="registry.example.com/runtime:1")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def node(name, labels, gpus=1, ready=True):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def request(ws, nodes=(), children=None, claims=()):
    ws = copy.deepcopy(ws)
    ws["metadata"].setdefault("namespace", "default")
    ws["metadata"].setdefault("generation", 1)
    return {"parent": ws, "children": children or {},
            "related": {"Node.v1": {n["metadata"]["name"]: n for n in nodes},
                        "NodeClaim.karpenter.sh/v1": {c["metadata"]["name"]: c for c in claims}}}


def ready_nodes(ws, count=1):
    labels = {**ws["resource"]["labelSelector"]["matchLabels"],
              "node.kubernetes.io/instance-type": ws["resource"]["instanceType"]}
    return [node(f"n{i}", labels) for i in range(count)]


def test_customize_asks_for_own_claims_and_selected_nodes(inference_ws):
    inference_ws["metadata"]["namespace"] = "team"
    rules = sync_workspace.customize(inference_ws, SETTINGS)["relatedResources"]
    assert rules[0] == {"apiVersion": "karpenter.sh/v1", "resource": "nodeclaims", "labelSelector": {"matchLabels": {
        "kaito.sh/workspace": "workspace-phi-3-mini", "kaito.sh/workspacenamespace": "team"}}}
    assert rules[1] == {"apiVersion": "v1", "resource": "nodes", "labelSelector": {"matchLabels": {"apps": "phi-3"}}}
    assert rules[2] == {"apiVersion": "v1", "resource": "pods", "namespace": "team",
                        "labelSelector": {"matchLabels": {"kaito.sh/workspace": "workspace-phi-3-mini"}}}


def test_no_children_until_nodes_are_ready(inference_ws):
    reply = sync_workspace.sync(request(inference_ws), SETTINGS, T0)
    assert reply["children"] == [] and reply["resyncAfterSeconds"] > 0
    conds = {c["type"]: c for c in reply["status"]["conditions"]}
    assert conds["ResourceReady"]["message"] == "0 of 1 nodes ready"


def test_children_are_valid_kubernetes_objects(adapters_ws, tuning_ws):
    for ws in (adapters_ws, tuning_ws):
        reply = sync_workspace.sync(request(ws, ready_nodes(ws)), SETTINGS, T0)
        assert reply["children"]
        for child in reply["children"]:
            for version in ("1.30", "1.37"):
                kubernetes_validate.validate(child, version, strict=True)
            assert child["metadata"]["labels"]["kaito.sh/workspace"] == ws["metadata"]["name"]
            assert "namespace" not in child["metadata"]  # Metacontroller defaults it to the parent's


def test_multi_node_workers_and_ray_port(inference_ws):
    inference_ws["resource"]["count"] = 3
    nodes = ready_nodes(inference_ws, 2)
    reply = sync_workspace.sync(request(inference_ws, nodes), SETTINGS, T0)
    assert reply["children"] == []
    assert "2 of 3 nodes ready" in reply["status"]["conditions"][0]["message"]
    reply = sync_workspace.sync(request(inference_ws, ready_nodes(inference_ws, 3)), SETTINGS, T0)
    kinds = {(c["kind"], c["metadata"]["name"]): c for c in reply["children"]}
    worker = kinds[("Deployment", "workspace-phi-3-mini-worker")]
    assert worker["spec"]["replicas"] == 2
    svc = kinds[("Service", "workspace-phi-3-mini")]["spec"]
    assert [p["port"] for p in svc["ports"]] == [80, 6379]
    assert svc["type"] == "ClusterIP"
    args = yaml.safe_load(kinds[("ConfigMap", "workspace-phi-3-mini")]["data"]["serve_config.yaml"])
    assert args["applications"][0]["args"]["num_replicas"] == 3
    assert reply["status"]["workerNodes"] == ["n0", "n1", "n2"]


def test_nodes_of_another_workspace_or_wrong_type_do_not_count(inference_ws):
    labels = {"apps": "phi-3", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"}
    nodes = [node("theirs", {**labels, "kaito.sh/workspace": "other", "kaito.sh/workspacenamespace": "default"}),
             node("wrong-type", {**labels, "node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4"}),
             node("not-ready", labels, ready=False), node("no-gpu", labels, gpus=0)]
    reply = sync_workspace.sync(request(inference_ws, nodes), SETTINGS, T0)
    assert reply["status"]["workerNodes"] == [] and reply["children"] == []
    inference_ws["resource"]["preferredNodes"] = ["wrong-type"]
    reply = sync_workspace.sync(request(inference_ws, nodes), SETTINGS, T0)
    assert reply["status"]["workerNodes"] == ["wrong-type"]


def test_transition_times_only_move_when_status_changes(inference_ws):
    req = request(inference_ws, ready_nodes(inference_ws))
    first = sync_workspace.sync(req, SETTINGS, T0)
    req["parent"]["status"] = first["status"]
    second = sync_workspace.sync(req, SETTINGS, T1)
    assert json.dumps(first) == json.dumps(second)
    # the Deployment becomes ready: only InferenceReady/WorkspaceReady move
    dep = next(c for c in first["children"] if c["kind"] == "Deployment")
    observed = {**dep, "metadata": {**dep["metadata"], "namespace": "default"}, "status": {"readyReplicas": 1}}
    req["children"] = {"Deployment.apps/v1": {"default/workspace-phi-3-mini": observed}}
    third = sync_workspace.sync(req, SETTINGS, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in third["status"]["conditions"]}
    assert times == {"ResourceReady": T0, "InferenceReady": T1, "WorkspaceReady": T1}
    assert "resyncAfterSeconds" not in third


def test_invalid_spec_keeps_children_as_last_applied(inference_ws):
    sent = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workspace-phi-3-mini"}, "data": {"a": "b"}}
    observed = {**sent, "metadata": {**sent["metadata"], "namespace": "default", "uid": "u",
                                     "annotations": {"metacontroller.k8s.io/last-applied-configuration": json.dumps(sent)}}}
    inference_ws["inference"]["preset"]["name"] = "no-such-model"
    req = request(inference_ws, children={"ConfigMap.v1": {"default/workspace-phi-3-mini": observed}})
    reply = sync_workspace.sync(req, SETTINGS, T0)
    assert reply["children"] == [sent]
    cond = {c["type"]: c for c in reply["status"]["conditions"]}["WorkspaceReady"]
    assert cond["reason"] == "InvalidSpec" and "inference.preset.name" in cond["message"]
    assert "no-such-model" in cond["message"]


def test_template_workspace_gets_our_scheduling_and_count_replicas():
    ws = yaml.safe_load(open("examples/inference/kaito_workspace_custom_template.yaml"))
    ws["resource"]["count"] = 2
    reply = sync_workspace.sync(request(ws, ready_nodes(ws, 2)), SETTINGS, T0)
    (dep,) = reply["children"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["name"] == "custom-llm-container"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert dep["spec"]["template"]["metadata"]["labels"]["kaito.sh/workspace"] == "workspace-custom-llm"


def test_tuning_job_secret_handling_and_spec_hash(tuning_ws):
    nodes = ready_nodes(tuning_ws)
    job = next(c for c in sync_workspace.sync(request(tuning_ws, nodes), SETTINGS, T0)["children"] if c["kind"] == "Job")
    text = json.dumps(job)
    assert "ACR_REGISTRY_SECRET_HERE" in text  # mounted as a volume...
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert all("ACR_REGISTRY_SECRET_HERE" not in json.dumps(e) for e in container["env"])  # ...never in env
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    tuning_ws["tuning"]["method"] = "lora"
    job2 = next(c for c in sync_workspace.sync(request(tuning_ws, nodes), SETTINGS, T0)["children"] if c["kind"] == "Job")
    h1, h2 = (j["metadata"]["annotations"]["kaito.sh/tuning-spec-hash"] for j in (job, job2))
    assert h1 != h2 and re.fullmatch("[0-9a-f]{16}", h1)


def test_enablelb_annotation_makes_a_load_balancer(inference_ws):
    inference_ws["metadata"]["annotations"] = {"kaito.sh/enablelb": "True"}
    reply = sync_workspace.sync(request(inference_ws, ready_nodes(inference_ws)), SETTINGS, T0)
    svc = next(c for c in reply["children"] if c["kind"] == "Service")
    assert svc["spec"]["type"] == "LoadBalancer"
