"""The same hooks with KAITO_CLAIM_API=machine: karpenter.sh/v1alpha5 Machines instead of NodeClaims."""
from __future__ import annotations

from tests.integration.hooks.hooks_harness import WS_API, children, claims, cond_status, conditions, load_example, workspace
from metacontroller.standins import UNAVAILABLE

CLAIM_API = "machine"


def test_phi3_with_machines(world_factory):
    world = world_factory()
    world.cluster.create(load_example("inference/kaito_workspace_phi_3.yaml"))
    name = "workspace-phi-3-mini"
    world.run_until(lambda: cond_status(world, name).get("WorkspaceReady") == "True", max_rounds=10)
    (machine,) = claims(world, CLAIM_API)
    assert machine["kind"] == "Machine" and machine["apiVersion"] == "karpenter.sh/v1alpha5"
    assert len(machine["metadata"]["name"]) == 11 and machine["metadata"]["name"].startswith("ws")
    assert machine["spec"]["machineTemplateRef"] == {"name": machine["metadata"]["name"]}
    assert machine["metadata"]["labels"]["karpenter.sh/provisioner-name"] == "default"
    types = {c["type"] for c in machine["status"]["conditions"]}
    assert {"MachineLaunched", "MachineRegistered", "MachineInitialized", "Ready"} <= types
    assert set(children(world, "default", name)) == {f"Deployment/{name}", f"Service/{name}", f"ConfigMap/{name}"}
    world.cluster.delete(WS_API, "Workspace", name, "default")
    world.step()
    assert claims(world, CLAIM_API) == [] and world.cluster.list("v1", "Node") == []


def test_machine_launch_failure(world_factory):
    world = world_factory(unavailable={"Standard_NC6s_v3"})
    world.cluster.create(load_example("inference/kaito_workspace_phi_3.yaml", name="no-vm"))
    world.run_until(lambda: UNAVAILABLE in conditions(workspace(world, "no-vm"))
                    .get("ResourceReady", {}).get("message", ""), max_rounds=6)
