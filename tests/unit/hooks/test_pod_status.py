"""Status never lies: pod-level facts, shaped as the kubelet and scheduler report them, become
conditions with a stable reason and a message naming the pod, the container and the cause."""
from __future__ import annotations

import copy
import json

import pytest

from hooks.core import status, sync_workspace
from tests.unit.hooks.test_sync_workspace import SETTINGS, T0, T1, ready_nodes, request

NS = "default"


def pod(name, ws, *, phase="Running", conditions=(), init=(), containers=(), restart="Always", image="rt:1"):
    spec = {"restartPolicy": restart, "containers": [{"name": c["name"], "image": image} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c["name"], "image": image} for c in init]
    st = {"phase": phase, "conditions": list(conditions)}
    if init:
        st["initContainerStatuses"] = list(init)
    if containers:
        st["containerStatuses"] = list(containers)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"kaito.sh/workspace": ws}},
            "spec": spec, "status": st}


def running(name, ready=True):
    return {"name": name, "image": "rt:1", "ready": ready, "restartCount": 0,
            "state": {"running": {"startedAt": T0}}}


def crash_looping(name, reason, exit_code, message=""):
    term = {"exitCode": exit_code, "reason": reason, "startedAt": T0, "finishedAt": T0}
    if message:
        term["message"] = message
    return {"name": name, "image": "rt:1", "ready": False, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"back-off 5m0s restarting failed container={name} pod=x_default(uid)"}},
            "lastState": {"terminated": term}}


def pull_failing(name, reason):
    msg = ('Back-off pulling image "registry.local/nope:1"' if reason == "ImagePullBackOff" else
           'rpc error: code = NotFound desc = failed to pull and unpack image "registry.local/nope:1": not found')
    return {"name": name, "image": "registry.local/nope:1", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": msg}}}


UNSCHEDULED = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": T0,
               "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
                          "available: 3 No preemption victims found for incoming pod."}
FETCH_ERROR = ("INFO pulling registry.local/adapters/missing:1\n"
               "kaito pull: error: registry.local/adapters/missing:1: manifest unknown (HTTP 404)\n")


def ready_world(ws):
    """A synced inference workspace whose Deployments report every replica ready."""
    nodes = ready_nodes(ws)
    desired = sync_workspace.sync(request(ws, nodes), SETTINGS, T0)["children"]
    children: dict = {}
    for child in desired:
        obj = copy.deepcopy(child)
        obj["metadata"].update(namespace=NS, generation=1)
        if obj["kind"] == "Deployment":
            n = obj["spec"]["replicas"]
            obj["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n, "readyReplicas": n}
        group = sync_workspace.group_key(obj["apiVersion"], obj["kind"])
        children.setdefault(group, {})[f"{NS}/{obj['metadata']['name']}"] = obj
    return nodes, children, desired


def sync_with_pods(ws, pods, conditions=None):
    nodes, children, desired = ready_world(ws)
    req = request(ws, nodes, children)
    req["related"]["Pod.v1"] = {f"{NS}/{p['metadata']['name']}": p for p in pods}
    if conditions is not None:
        req["parent"]["status"] = {"conditions": conditions}
    return sync_workspace.sync(req, SETTINGS, T1), desired


def conds(reply):
    return {c["type"]: c for c in reply["status"]["conditions"]}


CASES = {
    "oom": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, containers=[crash_looping("serve", "OOMKilled", 137)]),
            status.CONTAINER_OOM_KILLED, ["container serve", "CrashLoopBackOff", "OOMKilled (exit code 137)"]),
    "crash": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, containers=[crash_looping(
                  "serve", "Error", 1, "Traceback...\nserving: error: model /mnt/model: config.json not found\n")]),
              status.CONTAINER_CRASH_LOOPING,
              ["container serve", "Error (exit code 1): serving: error: model /mnt/model: config.json not found"]),
    "pull-backoff": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, phase="Pending",
                                    containers=[pull_failing("serve", "ImagePullBackOff")]),
                     status.IMAGE_PULL_FAILED, ["container serve", "registry.local/nope:1", "ImagePullBackOff"]),
    "err-pull": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, phase="Pending",
                                containers=[pull_failing("serve", "ErrImagePull")]),
                 status.IMAGE_PULL_FAILED, ["container serve", "ErrImagePull", "not found"]),
    "unschedulable": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, phase="Pending", conditions=[UNSCHEDULED]),
                      status.POD_UNSCHEDULABLE, ["(Unschedulable)", "3 Insufficient nvidia.com/gpu"]),
    "init-failed": (lambda ws: pod(f"{ws}-7d9f-abcde", ws, phase="Pending",
                                   init=[crash_looping("adapter-missing", "Error", 1, FETCH_ERROR)],
                                   containers=[{"name": "serve", "image": "rt:1", "ready": False, "restartCount": 0,
                                                "state": {"waiting": {"reason": "PodInitializing"}}}]),
                    status.INIT_CONTAINER_FAILED,
                    ["init container adapter-missing failed: Error (exit code 1): kaito pull: error: "
                     "registry.local/adapters/missing:1: manifest unknown (HTTP 404)"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inference_pod_failure_is_named_and_children_kept(inference_ws, case):
    make, reason, parts = CASES[case]
    ws = inference_ws["metadata"]["name"]
    bad = make(ws)
    healthy = pod(f"{ws}-worker-0", ws, containers=[running("ray-worker")])
    reply, desired = sync_with_pods(inference_ws, [healthy, bad])
    c = conds(reply)
    assert c["InferenceReady"]["status"] == "False" and c["InferenceReady"]["reason"] == reason
    assert c["WorkspaceReady"]["status"] == "False" and c["WorkspaceReady"]["reason"] == reason
    msg = c["InferenceReady"]["message"]
    assert f"pod {bad['metadata']['name']}" in msg
    for part in parts:
        assert part in msg
    assert "back-off 5m0s" not in msg  # the kubelet's changing back-off text never reaches status
    assert reply["children"] == desired  # a failing pod never deletes children
    assert reply["resyncAfterSeconds"] > 0
    # the same world re-synced gives byte-identical status (no hot loop)
    again, _ = sync_with_pods(inference_ws, [bad, healthy], reply["status"]["conditions"])
    assert json.dumps(again["status"], sort_keys=True) == json.dumps(reply["status"], sort_keys=True)


def test_healthy_pods_leave_the_workspace_ready(inference_ws):
    ws = inference_ws["metadata"]["name"]
    reply, _ = sync_with_pods(inference_ws, [pod(f"{ws}-0", ws, containers=[running("serve")])])
    assert conds(reply)["InferenceReady"]["status"] == "True"
    assert conds(reply)["WorkspaceReady"]["status"] == "True"


def test_pods_of_another_namespace_or_being_deleted_are_ignored(inference_ws):
    ws = inference_ws["metadata"]["name"]
    other = pod(f"{ws}-x", ws, containers=[crash_looping("serve", "OOMKilled", 137)])
    other["metadata"]["namespace"] = "elsewhere"
    leaving = pod(f"{ws}-y", ws, containers=[crash_looping("serve", "OOMKilled", 137)])
    leaving["metadata"]["deletionTimestamp"] = T0
    reply, _ = sync_with_pods(inference_ws, [other, leaving])
    assert conds(reply)["InferenceReady"]["status"] == "True"


def test_first_problem_in_pod_name_order_wins(inference_ws):
    ws = inference_ws["metadata"]["name"]
    a = pod(f"{ws}-a", ws, phase="Pending", conditions=[UNSCHEDULED])
    b = pod(f"{ws}-b", ws, containers=[crash_looping("serve", "OOMKilled", 137)])
    for order in ([a, b], [b, a]):
        reply, _ = sync_with_pods(inference_ws, order)
        assert conds(reply)["InferenceReady"]["reason"] == status.POD_UNSCHEDULABLE


def tuning_world(ws, job_status, pods):
    nodes = ready_nodes(ws)
    desired = sync_workspace.sync(request(ws, nodes), SETTINGS, T0)["children"]
    job = next(copy.deepcopy(c) for c in desired if c["kind"] == "Job")
    job["metadata"]["namespace"] = NS
    job["status"] = job_status
    req = request(ws, nodes, {"Job.batch/v1": {f"{NS}/{job['metadata']['name']}": job}})
    req["related"]["Pod.v1"] = {f"{NS}/{p['metadata']['name']}": p for p in pods}
    return sync_workspace.sync(req, SETTINGS, T1), desired


def test_tuning_pod_that_cannot_pull_its_image_is_not_started(tuning_ws):
    ws = tuning_ws["metadata"]["name"]
    bad = pod(f"{ws}-q8x2z", ws, phase="Pending", restart="Never", containers=[pull_failing("tuning", "ErrImagePull")])
    reply, desired = tuning_world(tuning_ws, {"active": 1, "startTime": T0}, [bad])
    c = conds(reply)
    for t in ("JobStarted", "WorkspaceSucceeded", "WorkspaceReady"):
        assert c[t]["status"] == "False" and c[t]["reason"] == status.IMAGE_PULL_FAILED, t
    assert f"pod {bad['metadata']['name']} container tuning cannot pull image" in c["JobStarted"]["message"]
    assert reply["children"] == desired and reply["resyncAfterSeconds"] > 0


def test_failed_tuning_job_quotes_its_pod(tuning_ws):
    ws = tuning_ws["metadata"]["name"]
    term = {"name": "tuning", "image": "rt:1", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2, "reason": "Error",
                                     "message": "tuning: error: dataset has no 'messages' column\n"}}}
    bad = pod(f"{ws}-q8x2z", ws, phase="Failed", restart="Never", containers=[term])
    failed = {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                           "message": "Job has reached the specified backoff limit"}]}
    reply, _ = tuning_world(tuning_ws, failed, [bad])
    c = conds(reply)["WorkspaceSucceeded"]
    assert c["status"] == "False" and c["reason"] == "BackoffLimitExceeded"
    assert c["message"] == (f"Job has reached the specified backoff limit; pod {bad['metadata']['name']} container "
                            "tuning failed: Error (exit code 2): tuning: error: dataset has no 'messages' column")
    assert "resyncAfterSeconds" not in reply  # finished: nothing to wait for


def test_termination_message_is_its_last_line_and_bounded():
    assert status.last_line("a\n\nlast one\n  \n") == "last one"
    long = status.last_line("x" * 5000)
    assert len(long) == status.MESSAGE_CHARS and long.endswith("...")
