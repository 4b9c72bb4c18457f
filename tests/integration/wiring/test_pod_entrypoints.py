"""The hooks and the runtime agree: every command a hook puts into a pod is one its entrypoint takes.

The hooks cannot import serving/tuning (the control-plane image stays small), so this test is
where the contract is checked: render each example with the real hook core, then feed each
container's command and each ConfigMap to the code that will run it in the pod.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hooks.tools.render import render
from tests.support.seeds import with_real_references

ROOT = Path(__file__).resolve().parents[3]
INFERENCE = ["kaito_workspace_phi_3.yaml", "kaito_workspace_phi_3_with_adapters.yaml", "kaito_workspace_falcon_40b_two_nodes.yaml"]
TUNING = ["kaito_workspace_tuning_phi_3.yaml", "kaito_workspace_tuning_qlora_image.yaml"]


def _render(path: Path) -> dict[tuple[str, str], dict]:
    objects, status = render(with_real_references(yaml.safe_load(path.read_text())))
    assert not any(c["reason"] == "InvalidSpec" for c in status.get("conditions", [])), status
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _containers(pod_owner: dict) -> list[dict]:
    spec = pod_owner["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _check_kaito_pull(command: list[str], mounts: list[dict]) -> None:
    from artifacts.cli_pull import build_parser
    from artifacts.reference import OciReference
    from artifacts import parse_source

    assert command[:2] == ["kaito", "pull"], command
    args = build_parser().parse_args(command[2:])
    if args.serve_config is not None:  # the adapter prefetch reads the mounted Serve config
        assert any(args.serve_config.startswith(m["mountPath"]) for m in mounts)
    else:
        assert isinstance(parse_source(args.source), OciReference)


@pytest.mark.parametrize("name", TUNING)
def test_tuning_job_runs_the_tuning_entrypoint_with_valid_arguments(name):
    from tuning.cli import build_parser, request_from_args
    from tuning.config import parse_training_config

    objs = _render(ROOT / "examples" / "tuning" / name)
    job = next(o for (kind, _), o in objs.items() if kind == "Job")
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["command"][:3] == ["python", "-m", "tuning"]
    args = build_parser("python -m tuning").parse_args(main["command"][3:])
    request = request_from_args(args)
    workspace = with_real_references(yaml.safe_load((ROOT / "examples" / "tuning" / name).read_text()))
    assert args.method == workspace["tuning"]["method"].lower()
    assert args.push == workspace["tuning"]["output"]["image"]
    assert request is not None
    # The push secret reaches the entrypoint only as a mounted DOCKER_CONFIG directory.
    env = {e["name"]: e.get("value") for e in main.get("env", [])}
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert env["DOCKER_CONFIG"] in mounts
    assert not any("Secret" in str(e.get("valueFrom", "")) for e in main.get("env", []))
    for container in job["spec"]["template"]["spec"].get("initContainers", []):
        _check_kaito_pull(container["command"], container["volumeMounts"])
    # The default config the hook generates is one the trainer accepts for this method.
    config_maps = [o for (kind, _), o in objs.items() if kind == "ConfigMap"]
    for cm in config_maps:
        parse_training_config(yaml.safe_load(cm["data"]["training_config.yaml"]), args.method)


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_pods_run_the_serving_entrypoints_with_their_serve_config(name, tmp_path):
    """The Serve config's content is the contract model's (tests/unit/contract/test_serveargs.py); here:
    the head's deploy of it is a valid Ray Serve config whose application is serving's builder (the
    live keys as the deployment's user_config), and each pod command parses at its entrypoint."""
    import importlib

    from ray.serve.schema import ServeDeploySchema

    from contract.serveconfig import load_serve_config
    from serving.app import DEPLOYMENT_NAME
    from serving.cluster import load_config
    from serving.liveconfig import HOT_KEYS, declarative

    path = ROOT / "examples" / "inference" / name
    workspace = yaml.safe_load(path.read_text())
    ws_name = workspace["metadata"]["name"]
    objs = _render(path)
    config_file = tmp_path / "serve_config.yaml"
    config_file.write_text(objs[("ConfigMap", ws_name)]["data"]["serve_config.yaml"])
    [app] = load_serve_config(str(config_file)).applications
    args = app.args
    [deployed] = ServeDeploySchema.model_validate(declarative(load_config(str(config_file)), DEPLOYMENT_NAME)).applications
    module, _, attr = deployed.import_path.partition(":")
    assert type(getattr(importlib.import_module(module), attr)(deployed.args)).__name__ == "Application"
    assert not set(deployed.args) & set(HOT_KEYS)
    [deployment] = deployed.deployments
    assert deployment.name == DEPLOYMENT_NAME and deployment.user_config["adapters"] == [
        a.model_dump(mode="json", exclude_unset=True) for a in args.adapters]

    head = objs[("Deployment", ws_name)]
    main = head["spec"]["template"]["spec"]["containers"][0]
    assert main["command"][:4] == ["python", "-m", "serving.cluster", "head"]
    config_path = main["command"][main["command"].index("--config") + 1]
    assert any(config_path.startswith(m["mountPath"]) for m in main["volumeMounts"])
    for container in head["spec"]["template"]["spec"].get("initContainers", []):
        _check_kaito_pull(container["command"], container["volumeMounts"])
    worker = objs.get(("Deployment", f"{ws_name}-worker"))
    assert (worker is not None) == (args.num_replicas > 1)
    if worker:
        command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:4] == ["python", "-m", "serving.cluster", "worker"]
        host, port = command[command.index("--address") + 1].split(":")
        service = objs[("Service", ws_name)]
        assert host == ws_name and int(port) in [p["port"] for p in service["spec"]["ports"]]
