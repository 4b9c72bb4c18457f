"""Pods reach the Workspace sync as related objects, the way Metacontroller passes them
(reference/metacontroller.md §2.4: a customize rule with namespace and labelSelector)."""
from __future__ import annotations

import copy

from hooks.core import status
from hooks.tools.emulated import inprocess_transport, make_world
from tests.support.conditions import conditions
from hooks.core.settings import CLAIM_APIS, Settings
from tests.unit.hooks.test_pod_status import CASES, pod

WS_API = ("kaito.sh/v1alpha1", "Workspace")


def _world():
    settings = Settings(claim_api=CLAIM_APIS["nodeclaim"])
    clock = lambda: "2026-01-01T00:00:00Z"  # noqa: E731 - a fixed clock keeps status byte-identical
    return make_world(settings, transport=inprocess_transport(settings, clock), clock=clock)


def test_a_failing_pod_turns_a_ready_workspace_false_and_recovery_turns_it_back(inference_ws):
    world = _world()
    ws = copy.deepcopy(inference_ws)
    ws["metadata"]["namespace"] = "default"
    name = ws["metadata"]["name"]
    world.cluster.create(ws)
    get = lambda: world.get(*WS_API, name, "default")  # noqa: E731
    world.run_until(lambda: conditions(get()).get("WorkspaceReady") == "True", max_rounds=10)
    kids = sorted(o["metadata"]["name"] for o in world.cluster.all_objects() if o["kind"] == "Deployment")

    # the same labels in another namespace are not this workspace's pods
    stray = CASES["oom"][0](name)
    stray["metadata"]["namespace"] = "elsewhere"
    world.cluster.create(stray)
    world.step()
    assert conditions(get())["InferenceReady"] == "True"

    bad = CASES["init-failed"][0](name)
    world.cluster.create(bad)
    world.run_until(lambda: conditions(get()).get("InferenceReady") == "False", max_rounds=5)
    cond = next(c for c in get()["status"]["conditions"] if c["type"] == "InferenceReady")
    assert cond["reason"] == status.INIT_CONTAINER_FAILED
    assert f"pod {bad['metadata']['name']} init container adapter-missing failed" in cond["message"]
    assert sorted(o["metadata"]["name"] for o in world.cluster.all_objects() if o["kind"] == "Deployment") == kids
    before = copy.deepcopy(get()["status"])
    version = get()["metadata"]["resourceVersion"]
    for _ in range(3):
        world.step()
    assert get()["status"] == before and get()["metadata"]["resourceVersion"] == version  # no status churn

    world.cluster.delete("v1", "Pod", bad["metadata"]["name"], "default")
    world.cluster.create(pod(bad["metadata"]["name"], name, containers=[
        {"name": "serve", "image": "rt:1", "ready": True, "restartCount": 0, "state": {"running": {}}}]))
    world.run_until(lambda: conditions(get()).get("WorkspaceReady") == "True", max_rounds=5)
