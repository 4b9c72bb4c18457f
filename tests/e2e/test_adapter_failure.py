"""A real failing container: an adapter reference that does not exist. The adapter init container
(runtime image) fails, and its own error line reaches the Workspace status through the emulator."""
from __future__ import annotations

import copy

import yaml

from hooks.core import status
from hooks.tools.emulated import make_world
from tests.support.conditions import conditions
from hooks.core.settings import CLAIM_APIS, Settings
from tests.e2e.conftest import ROOT, RUNTIME_REF
from tests.support.pods import Objects, PodRunner
from tests.support.registry import registry_fixture

registry = registry_fixture()
WS_API = ("kaito.sh/v1alpha1", "Workspace")


def test_missing_adapter_image_is_named_in_the_workspace_status(hook_pod, runtime_image, registry, tmp_path):
    _, base, dep = hook_pod
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAITO_RUNTIME_IMAGE"] == RUNTIME_REF
    world = make_world(Settings(claim_api=CLAIM_APIS[env["KAITO_CLAIM_API"]]), base_url=base)
    ws = yaml.safe_load((ROOT / "examples" / "inference" / "kaito_workspace_tiny.yaml").read_text())
    name = ws["metadata"]["name"]
    ws["metadata"]["namespace"] = "default"
    missing = f"{registry.host}/adapters/missing:1"
    ws["inference"]["adapters"] = [{"source": {"name": "missing", "image": missing}}]
    world.standins[1].hold.add(("default", name))  # only real pods decide readiness here
    world.cluster.create(ws)
    world.run_until(lambda: world.get("apps/v1", "Deployment", name, "default") is not None, max_rounds=10)
    head = world.get("apps/v1", "Deployment", name, "default")
    config = world.get("v1", "ConfigMap", name, "default")

    template = copy.deepcopy(head["spec"]["template"])
    pod_name = f"{name}-6f7c9d-x2x4q"
    runner = PodRunner(pod_name, template["spec"], Objects(config_maps={name: config}),
                       images={RUNTIME_REF: runtime_image}, extra_env={"KAITO_INSECURE_REGISTRIES": registry.host},
                       workdir=tmp_path)
    try:
        runner.start(init_timeout=180)
        pod = runner.pod_object("default", template["metadata"]["labels"])
        [init] = pod["status"]["initContainerStatuses"]
        assert init["state"]["terminated"]["exitCode"] != 0, runner.logs(init["name"])
        print(f"\nadapter init container output (its termination message):\n{init['state']['terminated'].get('message')}")
        world.cluster.create(pod)
        get = lambda: world.get(*WS_API, name, "default")  # noqa: E731
        world.run_until(lambda: conditions(get()).get("InferenceReady") == "False"
                        and any(c["reason"] == status.INIT_CONTAINER_FAILED for c in get()["status"]["conditions"]),
                        max_rounds=5)
        cond = next(c for c in get()["status"]["conditions"] if c["type"] == "InferenceReady")
        print(f"InferenceReady: {cond['reason']}: {cond['message']}")
        assert cond["message"].startswith(f"pod {pod_name} init container {init['name']} failed: Error (exit code 1): kaito pull: error:")
        assert missing.split("/", 1)[1].split(":")[0] in cond["message"]
        assert conditions(get())["WorkspaceReady"] == "False"
        assert world.get("apps/v1", "Deployment", name, "default") is not None  # children kept
    finally:
        runner.remove()
