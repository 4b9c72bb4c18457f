"""The hooks image, run as deploy/ runs it, drives a Workspace to Ready through the Metacontroller emulator."""
from __future__ import annotations

import json
import subprocess

import yaml

from hooks.tools.emulated import make_world
from tests.support.conditions import conditions
from hooks.core.settings import CLAIM_APIS, Settings
from tests.e2e.conftest import ROOT
from tests.support.images import PODMAN, RUNC


def test_hook_container_runs_as_deploy_renders_it(hook_pod):
    runner, _, dep = hook_pod
    spec = dep["spec"]["template"]["spec"]
    [container] = spec["containers"]
    name = runner.container_name(container)
    raw = subprocess.run([PODMAN, "--runtime", RUNC, "inspect", name], capture_output=True, text=True, check=True).stdout
    info = json.loads(raw)[0]
    assert info["State"]["Running"], runner.logs("hooks")
    assert info["Config"]["User"] == f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    # the rendered command, with only the listen address moved to loopback and a free port
    entry = info["Config"]["Entrypoint"]
    assert (entry if isinstance(entry, list) else [entry]) == container["command"][:1]
    assert info["Config"]["Cmd"][:-2] == container["command"][1:-2]
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    for e in container["env"]:
        assert env[e["name"]] == e["value"]
    # nothing but /tmp is writable
    probe = subprocess.run([PODMAN, "--runtime", RUNC, "exec", name, "sh", "-c",
                            "touch /app/x 2>&1; touch /tmp/ok && echo tmp-ok"], capture_output=True, text=True)
    assert "Read-only file system" in probe.stdout and "tmp-ok" in probe.stdout
    assert subprocess.run([PODMAN, "--runtime", RUNC, "exec", name, "id", "-u"], capture_output=True,
                          text=True).stdout.strip() == "1000"


def test_workspace_reaches_ready_through_the_hook_container(hook_pod):
    _, base, dep = hook_pod
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    world = make_world(Settings(claim_api=CLAIM_APIS[env["KAITO_CLAIM_API"]]), base_url=base)
    ws = yaml.safe_load((ROOT / "examples" / "inference" / "kaito_workspace_phi_3.yaml").read_text())
    ws["metadata"]["namespace"] = "default"
    world.cluster.create(ws)
    name = ws["metadata"]["name"]
    rounds = world.run_until(lambda: conditions(world.get("kaito.sh/v1alpha1", "Workspace", name, "default"))
                             .get("WorkspaceReady") == "True", max_rounds=10)
    got = world.get("kaito.sh/v1alpha1", "Workspace", name, "default")
    assert conditions(got) == {"ResourceReady": "True", "InferenceReady": "True", "WorkspaceReady": "True"}, got["status"]
    print(f"\nWorkspace {name} Ready after {rounds} emulator rounds against the hook container")
    kinds = sorted(o["kind"] for o in world.cluster.all_objects()
                   if (o["metadata"].get("labels") or {}).get("kaito.sh/workspace") == name
                   and o["kind"] in ("Deployment", "Service", "ConfigMap"))
    assert kinds == ["ConfigMap", "Deployment", "Service"]
