"""Workspace lifecycles through real gunicorn, driven by the Metacontroller emulator over HTTP."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from metacontroller.api import build_object_map
from metacontroller.standins import UNAVAILABLE, add_node

from tests.integration.hooks.hooks_harness import (EXAMPLES, WS_API, children, claims, cond_status, conditions, load_example, validate_strict,
                       workspace)

CLAIM_API = "nodeclaim"
PHI3 = "inference/kaito_workspace_phi_3.yaml"
ADAPTERS = "inference/kaito_workspace_phi_3_with_adapters.yaml"
TUNING = "tuning/kaito_workspace_tuning_phi_3.yaml"


def _ready(world, name, ns="default", kind="WorkspaceReady"):
    return lambda: cond_status(world, name, ns).get(kind) == "True"


def test_phi3_inference_lifecycle(world_factory):
    world = world_factory()
    ws = load_example(PHI3)
    name = ws["metadata"]["name"]
    world.cluster.create(ws)

    world.step()  # NodeProvisioner asks for a claim; nothing can run yet
    assert len(claims(world, CLAIM_API)) == 1
    assert children(world, "default", name) == {}
    assert cond_status(world, name)["ResourceReady"] == "False"
    assert "0 of 1 nodes ready" in conditions(workspace(world, name))["ResourceReady"]["message"]
    claim = claims(world, CLAIM_API)[0]
    assert claim["metadata"]["labels"]["kaito.sh/workspace"] == name
    assert claim["metadata"]["labels"]["kaito.sh/workspacenamespace"] == "default"
    assert claim["metadata"]["labels"]["apps"] == "phi-3"
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]} \
        in claim["spec"]["requirements"]

    world.run_until(_ready(world, name), max_rounds=10)
    kids = children(world, "default", name)
    assert set(kids) == {f"Deployment/{name}", f"Service/{name}", f"ConfigMap/{name}"}
    assert validate_strict(kids.values()) == 3
    status = workspace(world, name)["status"]
    assert status["workerNodes"] == [world.cluster.list("v1", "Node")[0]["metadata"]["name"]]
    assert status["observedGeneration"] == 1
    assert cond_status(world, name) == {"ResourceReady": "True", "InferenceReady": "True", "WorkspaceReady": "True"}

    dep = kids[f"Deployment/{name}"]
    pod = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Workspace"
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    svc = kids[f"Service/{name}"]["spec"]
    assert [(p["port"], p["targetPort"]) for p in svc["ports"]] == [(80, 8000)]  # no Ray port for count 1
    config = yaml.safe_load(kids[f"ConfigMap/{name}"]["data"]["serve_config.yaml"])
    args = config["applications"][0]["args"]
    assert args["preset"] == "phi-3-mini-4k-instruct" and args["model"].startswith("hf://microsoft/Phi-3-mini-4k")
    assert args["num_replicas"] == 1 and args["gpus_per_replica"] == 1


def test_adapters_travel_in_the_serve_config_and_an_edit_leaves_the_deployment_alone(world_factory):
    world = world_factory()
    ws = load_example(ADAPTERS)
    ws["inference"]["adapters"].append({"source": {"name": "second", "image": "registry.example.com/ad/second:1",
                                                   "imagePullSecrets": ["pull-secret"]}, "strength": "0.25"})
    name = ws["metadata"]["name"]
    world.cluster.create(ws)
    world.run_until(_ready(world, name), max_rounds=10)
    kids = children(world, "default", name)
    validate_strict(kids.values())
    dep = kids[f"Deployment/{name}"]
    [prefetch] = dep["spec"]["template"]["spec"]["initContainers"]
    assert prefetch["command"] == ["kaito", "pull", "--from-serve-config", "/mnt/config/serve_config.yaml"]
    assert {"name": "adapter-pull-secret-second", "mountPath": "/mnt/pull-secrets/second", "readOnly": True} in \
        prefetch["volumeMounts"]
    args = yaml.safe_load(kids[f"ConfigMap/{name}"]["data"]["serve_config.yaml"])["applications"][0]["args"]
    assert [(a["name"], a["source"], a["strength"], a.get("docker_config")) for a in args["adapters"]] == [
        ("phi-3-adapter", "oci://myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1", 1.0, None),
        ("second", "oci://registry.example.com/ad/second:1", 0.25, "/mnt/pull-secrets/second")]

    # Changing an adapter's strength or tag updates the ConfigMap only: the Deployment is not rolled.
    current = workspace(world, name)
    current["inference"]["adapters"][1]["strength"] = "0.5"
    current["inference"]["adapters"][0]["source"]["image"] = "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.2"
    world.cluster.update(current)
    world.step()
    after = children(world, "default", name)
    assert after[f"Deployment/{name}"]["metadata"]["uid"] == dep["metadata"]["uid"]
    assert after[f"Deployment/{name}"]["metadata"]["generation"] == dep["metadata"]["generation"]
    assert after[f"Deployment/{name}"]["spec"] == dep["spec"]
    args = yaml.safe_load(after[f"ConfigMap/{name}"]["data"]["serve_config.yaml"])["applications"][0]["args"]
    assert [a["strength"] for a in args["adapters"]] == [1.0, 0.5]
    assert args["adapters"][0]["source"].endswith(":0.0.2")


def test_tuning_lifecycle_succeeds_then_recreates_job_on_spec_change(world_factory):
    world = world_factory()
    ws = load_example(TUNING)
    name = ws["metadata"]["name"]
    world.cluster.create(ws)
    world.run_until(lambda: cond_status(world, name).get("JobStarted") == "True", max_rounds=10)
    pending = conditions(workspace(world, name))["WorkspaceSucceeded"]
    assert pending["status"] == "False" and pending["reason"] == "workspacePending"
    world.run_until(_ready(world, name, kind="WorkspaceSucceeded"), max_rounds=10)
    kids = children(world, "default", name)
    assert set(kids) == {f"Job/{name}", f"ConfigMap/{name}-tuning-config"}
    validate_strict(kids.values())
    job = kids[f"Job/{name}"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    cmd = container["command"]
    assert cmd[:3] == ["python", "-m", "tuning"] and cmd[cmd.index("--method") + 1] == "qlora"
    assert cmd[cmd.index("--push") + 1] == ws["tuning"]["output"]["image"]
    assert "--input-url" in cmd
    assert {"name": "DOCKER_CONFIG", "value": "/mnt/push-secret"} in container["env"]
    assert all("secretKeyRef" not in json.dumps(e) for e in container["env"])  # never copied into env
    assert not any(c.get("securityContext", {}).get("privileged") for c in job["spec"]["template"]["spec"]["containers"])
    assert "TrainingArguments" in yaml.safe_load(
        kids[f"ConfigMap/{name}-tuning-config"]["data"]["training_config.yaml"])["training_config"]

    current = workspace(world, name)
    current["tuning"]["output"]["image"] = "registry.example.com/adapters/new:0.0.2"
    world.cluster.update(current)
    world.run_until(lambda: (j := world.get("batch/v1", "Job", name, "default")) is not None
                    and j["metadata"]["uid"] != job["metadata"]["uid"], max_rounds=5)
    new = world.get("batch/v1", "Job", name, "default")
    assert new["metadata"]["annotations"]["kaito.sh/tuning-spec-hash"] != \
        job["metadata"]["annotations"]["kaito.sh/tuning-spec-hash"]


def test_tuning_failure_reports_the_job_reason(world_factory):
    world = world_factory()
    ws = load_example(TUNING, name="tuning-fails")
    world.standins[1].job_outcomes[("default", "tuning-fails")] = "fail"
    world.cluster.create(ws)
    world.run_until(lambda: conditions(workspace(world, "tuning-fails")).get("WorkspaceSucceeded", {})
                    .get("reason") == "BackoffLimitExceeded", max_rounds=10)
    cond = conditions(workspace(world, "tuning-fails"))["WorkspaceSucceeded"]
    assert cond["status"] == "False" and "backoff limit" in cond["message"]


def test_gpu_shortfall_is_a_false_condition_with_no_children_or_claims(world_factory):
    world = world_factory()
    ws = load_example(PHI3, name="too-small")
    ws["inference"]["preset"]["name"] = "falcon-40b-instruct"
    world.cluster.create(ws)
    for _ in range(3):
        world.step()
    cond = conditions(workspace(world, "too-small"))
    assert cond["WorkspaceReady"]["status"] == "False" and cond["WorkspaceReady"]["reason"] == "InvalidSpec"
    assert "resource.instanceType" in cond["WorkspaceReady"]["message"]
    assert "Insufficient" in cond["WorkspaceReady"]["message"]
    assert children(world, "default", "too-small") == {}
    assert claims(world, CLAIM_API) == []


def test_existing_labelled_nodes_need_no_claims(world_factory):
    world = world_factory()
    for i in range(2):
        add_node(world.cluster, f"byo-{i}", {"apps": "phi-3", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"},
                 gpus=1, taints=[{"key": "sku", "value": "gpu", "effect": "NoSchedule"}])
    ws = load_example(PHI3, name="byo")
    ws["resource"]["count"] = 2
    world.cluster.create(ws)
    world.run_until(_ready(world, "byo"), max_rounds=10)
    assert claims(world, CLAIM_API) == []
    assert workspace(world, "byo")["status"]["workerNodes"] == ["byo-0", "byo-1"]
    kids = children(world, "default", "byo")
    assert kids["Deployment/byo-worker"]["spec"]["replicas"] == 1
    assert [p["port"] for p in kids["Service/byo"]["spec"]["ports"]] == [80, 6379]
    assert kids["Deployment/byo-worker"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "byo:6379"
    validate_strict(kids.values())


def test_failed_claim_launch_reports_the_reason(world_factory):
    world = world_factory(unavailable={"Standard_NC6s_v3"})
    world.cluster.create(load_example(PHI3, name="no-capacity"))
    world.run_until(lambda: UNAVAILABLE in conditions(workspace(world, "no-capacity"))
                    .get("ResourceReady", {}).get("message", ""), max_rounds=6)
    assert cond_status(world, "no-capacity")["ResourceReady"] == "False"
    assert children(world, "default", "no-capacity") == {}


def test_deletion_drops_claims_children_and_nodes(world_factory):
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="short-lived"))
    world.run_until(_ready(world, "short-lived"), max_rounds=10)
    assert claims(world, CLAIM_API) and world.cluster.list("v1", "Node")
    world.cluster.delete(WS_API, "Workspace", "short-lived", "default")
    assert children(world, "default", "short-lived") == {}  # garbage-collected with the owner
    world.step()
    assert claims(world, CLAIM_API) == []
    assert world.cluster.list("v1", "Node") == []


def test_same_name_in_two_namespaces_does_not_collide(world_factory):
    world = world_factory()
    for ns in ("team-a", "team-b"):
        world.cluster.create(load_example(PHI3, namespace=ns, name="shared"))
    world.run_until(lambda: all(cond_status(world, "shared", ns).get("WorkspaceReady") == "True"
                                for ns in ("team-a", "team-b")), max_rounds=10)
    got = claims(world, CLAIM_API)
    assert len(got) == 2 and len({c["metadata"]["name"] for c in got}) == 2
    nodes_a = workspace(world, "shared", "team-a")["status"]["workerNodes"]
    nodes_b = workspace(world, "shared", "team-b")["status"]["workerNodes"]
    assert nodes_a != nodes_b
    assert set(children(world, "team-a", "shared")) == set(children(world, "team-b", "shared"))


def _post(base: str, path: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("path", ["/workspace/sync", "/workspace/customize", "/nodeprovisioner/sync",
                                  "/nodeprovisioner/customize"])
def test_garbage_truncated_and_incomplete_bodies_are_never_200(hook_server, path):
    ws = load_example(PHI3)
    full = json.dumps({"controller": {}, "parent": ws, "children": {}, "related": {}}).encode()
    cases = {
        "garbage": b"\x00\xffnot json",
        "truncated": full[: len(full) // 2],
        "not an object": b"[1, 2]",
        "no parent": json.dumps({"controller": {}, "children": {}}).encode(),
        "parent without name": json.dumps({"parent": {"metadata": {}}}).encode(),
    }
    if path.endswith("/sync"):  # a customize request carries no children (reference/metacontroller.md §2.4)
        cases["children not a map"] = json.dumps({"parent": ws, "children": [1], "related": {}}).encode()
        cases["related missing"] = json.dumps({"parent": ws, "children": {}}).encode()
    for label, body in cases.items():
        code, reply = _post(hook_server, path, body)
        assert code in (400, 422, 500), (label, code, reply)
        assert b"error" in reply


def test_malformed_observed_child_is_refused(hook_server):
    ws = load_example(PHI3)
    name = ws["metadata"]["name"]
    body = {"controller": {}, "parent": ws, "related": {}, "children": {"Deployment.apps/v1": {f"default/{name}": 5}}}
    code, reply = _post(hook_server, "/workspace/sync", json.dumps(body).encode())
    assert code == 422 and b"Deployment.apps/v1" in reply


def test_type_confusion_is_a_422_naming_the_path(hook_server):
    ws = load_example(PHI3)
    ws["metadata"]["generation"] = "not-a-number"
    ws["status"] = "broken"
    code, reply = _post(hook_server, "/workspace/sync", json.dumps({"parent": ws, "related": {}}).encode())
    error = json.loads(reply)["error"]
    assert code == 422 and "parent.metadata.generation" in error and "parent.status" in error
    code, reply = _post(hook_server, "/workspace/sync", b"[" * 50_000 + b"]" * 50_000)
    assert code == 400 and b"nests deeper" in reply


def test_failing_hook_changes_nothing(world_factory):
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="stable"))
    world.run_until(_ready(world, "stable"), max_rounds=10)
    before = {o["metadata"]["uid"]: o for o in world.cluster.all_objects()}
    ws_ctl = world.controllers[1]
    ws_ctl.spec["hooks"]["sync"]["webhook"]["path"] = "/workspace/missing"  # the server answers 404
    ws_ctl.spec["hooks"]["customize"]["webhook"]["path"] = "/workspace/missing"
    ws_ctl._customize_cache.clear()
    current = workspace(world, "stable")
    current["inference"]["preset"]["name"] = "phi-3-mini-128k-instruct"  # any change would show
    world.cluster.update(current)
    outcome = ws_ctl.reconcile(current)
    assert not outcome.ok and "404" in outcome.error
    assert ws_ctl.events[-1].reason == "SyncError"
    after = {o["metadata"]["uid"]: o for o in world.cluster.all_objects()}
    for uid, obj in before.items():
        if obj["kind"] != "Workspace":
            assert after[uid] == obj
    assert workspace(world, "stable")["status"] == before[current["metadata"]["uid"]]["status"]


def test_invalid_edit_keeps_running_children(world_factory):
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="typo"))
    world.run_until(_ready(world, "typo"), max_rounds=10)
    before = children(world, "default", "typo")
    current = workspace(world, "typo")
    current["inference"]["preset"]["name"] = "phi-3-mini-4k-instruc"
    world.cluster.update(current)
    world.step()
    world.step()
    after = children(world, "default", "typo")
    assert after == before
    cond = conditions(workspace(world, "typo"))["WorkspaceReady"]
    assert cond["reason"] == "InvalidSpec" and "phi-3-mini-4k-instruc" in cond["message"]


def test_repeated_syncs_of_the_same_world_are_byte_identical(world_factory, hook_server):
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="steady"))
    world.run_until(_ready(world, "steady"), max_rounds=10)
    ws_ctl = world.controllers[1]
    parent = workspace(world, "steady")
    observed = ws_ctl.observed_children(parent)
    nodes = world.cluster.list("v1", "Node")
    body = json.dumps({"controller": ws_ctl.controller, "parent": parent,
                       "children": build_object_map([("apps/v1", "Deployment"), ("v1", "Service"),
                                                     ("v1", "ConfigMap"), ("batch/v1", "Job")], observed),
                       "related": build_object_map([("v1", "Node"), ("karpenter.sh/v1", "NodeClaim")],
                                                   nodes + claims(world, CLAIM_API)),
                       "finalizing": False}).encode()
    first = _post(hook_server, "/workspace/sync", body)
    time.sleep(1.1)  # a wall-clock second later: transition times must come from the observed status
    second = _post(hook_server, "/workspace/sync", body)
    assert first[0] == 200 and first == second
    reply = json.loads(first[1])
    assert set(reply) <= {"status", "children", "resyncAfterSeconds", "finalized"}
    assert "resyncAfterSeconds" not in reply  # settled: nothing to poll for
    # and the emulator sees no change at all on another round
    versions = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in world.cluster.all_objects()}
    world.step()
    assert versions == {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in world.cluster.all_objects()}


def test_a_settled_world_stops_calling_the_hooks(world_factory):
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="quiet"))
    world.run_until(_ready(world, "quiet"), max_rounds=10)
    for _ in range(3):  # the last status write echoes back once, then nothing changes
        world.step()
    calls = [dict(c.hook_calls) for c in world.controllers]
    for _ in range(5):
        assert world.step() == {}  # no hot loop: nothing changed, nothing due
    assert [dict(c.hook_calls) for c in world.controllers] == calls
    for _ in range(12):  # resyncPeriodSeconds (60 s) passes: one sync per parent, nothing changes
        world.step()
    assert [c.hook_calls["sync"] for c in world.controllers] == [n["sync"] + 1 for n in calls]


def test_printer_columns_show_true(world_factory):
    import re
    world = world_factory()
    world.cluster.create(load_example(PHI3, name="columns"))
    world.run_until(_ready(world, "columns"), max_rounds=10)
    crd = yaml.safe_load((EXAMPLES.parent / "deploy/crds/kaito.sh_workspaces.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    obj = workspace(world, "columns")
    shown = {}
    for col in columns:
        m = re.fullmatch(r'\.status\.conditions\[\?\(@\.type=="(\w+)"\)\]\.status', col["jsonPath"])
        if m:
            shown[col["name"].upper()] = conditions(obj).get(m.group(1), {}).get("status", "")
    assert {k: shown[k] for k in ("RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY")} == \
        {"RESOURCEREADY": "True", "INFERENCEREADY": "True", "WORKSPACEREADY": "True"}


def test_fifty_workspaces_converge(world_factory):
    world = world_factory()
    for i in range(50):
        world.cluster.create(load_example(PHI3, namespace=f"ns-{i % 5}", name=f"ws-{i}"))
    rounds = world.run_until(lambda: all(cond_status(world, f"ws-{i}", f"ns-{i % 5}").get("WorkspaceReady") == "True"
                                         for i in range(50)), max_rounds=12)
    assert rounds <= 6
    assert len(claims(world, CLAIM_API)) == 50
    assert len({c["metadata"]["name"] for c in claims(world, CLAIM_API)}) == 50
    np = world.get(WS_API, "NodeProvisioner", "default")
    assert np["status"]["conditions"][0]["status"] == "True"
    assert sum(w["claims"] for w in np["status"]["workspaces"]) == 50


def test_healthz_and_metrics(hook_server):
    with urllib.request.urlopen(hook_server + "/healthz", timeout=5) as r:
        assert r.status == 200
    _post(hook_server, "/workspace/sync", b"{")
    with urllib.request.urlopen(hook_server + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'kaito_hook_request_duration_seconds_bucket{endpoint="workspace_sync"' in text
    assert 'kaito_hook_errors_total{code="400",endpoint="workspace_sync"}' in text


def test_two_node_workspace_gets_two_claims_a_worker_and_the_ray_port(world_factory):
    world = world_factory()
    ws = load_example("inference/kaito_workspace_falcon_40b_two_nodes.yaml")
    name = ws["metadata"]["name"]
    world.cluster.create(ws)
    world.run_until(_ready(world, name), max_rounds=10)
    assert len(claims(world, CLAIM_API)) == 2
    kids = children(world, "default", name)
    assert kids[f"Deployment/{name}-worker"]["spec"]["replicas"] == 1
    assert [p["port"] for p in kids[f"Service/{name}"]["spec"]["ports"]] == [80, 6379]
    assert len(workspace(world, name)["status"]["workerNodes"]) == 2


def test_custom_template_workspace(world_factory):
    world = world_factory()
    ws = load_example("inference/kaito_workspace_custom_template.yaml")
    name = ws["metadata"]["name"]
    world.cluster.create(ws)
    world.run_until(_ready(world, name), max_rounds=10)
    assert set(children(world, "default", name)) == {f"Deployment/{name}"}
