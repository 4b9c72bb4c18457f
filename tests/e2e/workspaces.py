"""Shared steps of the container tests: a Workspace applied through the hook container (the
Metacontroller emulator against the hooks image), and its inference head pod as a PodRunner."""
from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from contract.serveconfig import SERVE_CONFIG_KEY
from hooks.tools.emulated import make_world
from hooks.core.settings import CLAIM_APIS, Settings
from tests.e2e.conftest import ROOT, RUNTIME_REF
from tests.support.pods import Objects, PodRunner, adapt_serve_config, ray_node_env
from tests.support.registry import _free_port

NAMESPACE = "default"



def hook_world(hook_pod):
    """An emulated cluster whose hooks are the hook container, configured as deploy/ configures it."""
    _, base, dep = hook_pod
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    return make_world(Settings(claim_api=CLAIM_APIS[env["KAITO_CLAIM_API"]]), base_url=base)


def example(path: str) -> dict:
    ws = yaml.safe_load((ROOT / "examples" / path).read_text())
    ws["metadata"]["namespace"] = NAMESPACE
    return ws


def apply(world, ws: dict, child: tuple[str, str, str]) -> float:
    """Create the Workspace and sync until `child` (apiVersion, kind, name) exists; returns when it
    was applied (time.monotonic()). The Deployment stand-in holds the head Deployment unready:
    only the real pods decide readiness here."""
    world.standins[1].hold.add((NAMESPACE, ws["metadata"]["name"]))
    applied = time.monotonic()
    world.cluster.create(ws)
    world.run_until(lambda: world.get(child[0], child[1], child[2], NAMESPACE) is not None, max_rounds=10)
    return applied


def get(world, api: str, kind: str, name: str) -> dict:
    obj = world.get(api, kind, name, NAMESPACE)
    assert obj is not None, f"the hooks rendered no {kind} {name}"
    return obj


def head_pod(world, name: str, runtime_image: str, registry_host: str, workdir: Path, *, http_port: int,
             ray_port: int) -> PodRunner:
    """The head Deployment's pod with its Serve ConfigMap, on free loopback ports."""
    head = get(world, "apps/v1", "Deployment", name)
    svc = get(world, "v1", "Service", name)
    ports = {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]}
    config = adapt_serve_config(get(world, "v1", "ConfigMap", name), SERVE_CONFIG_KEY, http_port)
    port_map = {ports["http"]: http_port}
    if "ray-gcs" in ports:
        port_map[ports["ray-gcs"]] = ray_port
    return PodRunner(f"{name}-7b5d9c-head0", copy.deepcopy(head["spec"]["template"]["spec"]),
                     Objects(config_maps={name: config}), images={RUNTIME_REF: runtime_image},
                     ports=port_map, hosts=(name,),
                     extra_env={"KAITO_INSECURE_REGISTRIES": registry_host, **ray_node_env(_free_port, ray_port)},
                     workdir=workdir)


def check_inits(pod: PodRunner) -> None:
    """Whatever init containers the template has (adapter fetches) must have succeeded."""
    for s in pod.status().get("initContainerStatuses") or []:
        assert s["state"]["terminated"]["exitCode"] == 0, pod.logs(s["name"])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON body) of a POST; 0 with the error when the connection itself fails."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")[:300]}
    except OSError as e:
        return 0, {"error": repr(e)}
