"""Children of an inference Workspace: head/worker Deployments, Service and the Serve ConfigMap.

Names (DESIGN.md §4): Deployment `<ws>` (Ray head + Serve), Deployment `<ws>-worker` (count > 1),
Service `<ws>` (80 -> 8000, plus 6379 when count > 1), ConfigMap `<ws>` (key serve_config.yaml,
a contract.serveconfig.ServeConfig around contract.serveargs.ServeArgs). Adapters are pulled by one init container each into a shared volume.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Optional

import yaml

from contract.ports import RAY_PORT, SERVE_PORT, SERVICE_PORT
from contract.serveargs import AdapterArg, ServeArgs
from contract.serveconfig import (
    APP_IMPORT_PATH, SERVE_CONFIG_DIR, SERVE_CONFIG_KEY, SERVE_CONFIG_PATH, HttpOptions, ServeApplication, ServeConfig,
)
from metacontroller.api import Obj

from . import pod
from .names import adapter_key

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
ADAPTER_ROOT = "/mnt/adapter"
ADAPTER_VOLUME_ROOT = "/mnt/adapter-volumes"
MODEL_PULL_SECRET_DIR = "/mnt/model-pull-secret"
PROBE_PERIOD = 10


@dataclass(frozen=True)
class ServingPlan:
    """Everything the builders need, resolved from the Workspace and the catalog."""
    namespace: str
    name: str
    count: int
    match_labels: dict[str, str]
    worker_nodes: tuple[str, ...]
    gpus_per_node: int
    runtime_image: str
    preset: Optional[str] = None
    model: Optional[str] = None
    trust_remote_code: bool = False
    readiness_timeout_seconds: int = 1800
    adapters: tuple[Obj, ...] = ()      # raw AdapterSpec dicts
    model_access_secret: Optional[str] = None
    model_pull_secret: Optional[str] = None  # private access mode: credentials for the weights image
    template: Optional[Obj] = None      # inference.template (PodTemplateSpec) instead of a preset
    load_balancer: bool = False         # KAITO's annotation kaito.sh/enablelb: "True"


def adapter_name(adapter: Obj, index: int) -> str:
    return (adapter.get("source") or {}).get("name") or f"adapter-{index}"


def adapter_strength(adapter: Obj) -> float:
    raw = adapter.get("strength")
    return 1.0 if raw in (None, "") else float(raw)


def _from_volume(adapter: Obj) -> bool:
    source = adapter.get("source") or {}
    return not source.get("image") and bool(source.get("volumeSource"))


def adapter_path(adapter: Obj, index: int) -> str:
    """Where serving finds the adapter: pulled into the shared volume, or the user's volume mounted.
    The directory is the adapter's Kubernetes key, so names that differ only in case never share one."""
    root = ADAPTER_VOLUME_ROOT if _from_volume(adapter) else ADAPTER_ROOT
    return f"{root}/{adapter_key(adapter_name(adapter, index))}"


def serve_args(plan: ServingPlan) -> ServeArgs:
    """The Serve application's arguments, as the contract model serving validates with."""
    optional = {"preset": plan.preset, "model": plan.model, "served_model_name": plan.preset}
    return ServeArgs(
        **{k: v for k, v in optional.items() if v is not None},
        adapters=[AdapterArg(name=adapter_name(a, i), source=adapter_path(a, i), strength=adapter_strength(a))
                  for i, a in enumerate(plan.adapters)],
        num_replicas=plan.count, gpus_per_replica=plan.gpus_per_node, trust_remote_code=plan.trust_remote_code)


def serve_config(plan: ServingPlan) -> Obj:
    return ServeConfig(proxy_location="EveryNode", http_options=HttpOptions(host="0.0.0.0", port=SERVE_PORT),
                       applications=[ServeApplication(name="default", route_prefix="/", import_path=APP_IMPORT_PATH,
                                                      args=serve_args(plan))]).dump()


@functools.lru_cache(maxsize=4096)
def _yaml_text(config_json: str) -> str:
    # YAML emitting dominates a sync's cost; the same config is rendered on every resync.
    return yaml.dump(json.loads(config_json), Dumper=_DUMPER, sort_keys=False)


def config_map(plan: ServingPlan) -> Obj:
    text = _yaml_text(json.dumps(serve_config(plan)))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": pod.child_meta(plan.name, plan.name),
            "data": {SERVE_CONFIG_KEY: text}}


def _adapter_parts(plan: ServingPlan) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(init containers, volumes, main-container mounts): adapter images are pulled by one init
    container each into a shared volume; adapters on a user's volume are mounted read-only."""
    inits, volumes, mounts_main = [], [], []
    for i, adapter in enumerate(plan.adapters):
        src = adapter.get("source") or {}
        key = adapter_key(adapter_name(adapter, i))
        if _from_volume(adapter):
            volumes.append({"name": f"adapter-volume-{key}", **src["volumeSource"]})
            mounts_main.append({"name": f"adapter-volume-{key}", "mountPath": adapter_path(adapter, i), "readOnly": True})
            continue
        mounts = [{"name": "adapters", "mountPath": ADAPTER_ROOT}]
        env = []
        secrets = src.get("imagePullSecrets") or []
        if secrets:
            vol = f"adapter-pull-secret-{key}"
            volumes.append(pod.docker_config_volume(vol, secrets[0]))
            mounts.append({"name": vol, "mountPath": f"/mnt/pull-secrets/{key}", "readOnly": True})
            env.append({"name": "DOCKER_CONFIG", "value": f"/mnt/pull-secrets/{key}"})
        container = {"name": f"adapter-{key}", "image": plan.runtime_image,
                     "command": ["kaito", "pull", src.get("image", ""), adapter_path(adapter, i)],
                     "volumeMounts": mounts, "securityContext": pod.container_security(),
                     "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY}
        if env:
            container["env"] = env
        inits.append(container)
    if inits:
        volumes.insert(0, {"name": "adapters", "emptyDir": {}})
        mounts_main.insert(0, {"name": "adapters", "mountPath": ADAPTER_ROOT, "readOnly": True})
    return inits, volumes, mounts_main


def _labels(plan: ServingPlan, role: str) -> Obj:
    return {pod.WS_LABEL: plan.name, pod.ROLE_LABEL: role}


def _pod_spec(plan: ServingPlan, container: Obj, role: str) -> Obj:
    inits, adapter_volumes, adapter_mounts = _adapter_parts(plan)
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}] + adapter_mounts
    volumes = [pod.dshm_volume()] + adapter_volumes
    if plan.model_pull_secret:
        volumes.append(pod.docker_config_volume("model-pull-secret", plan.model_pull_secret))
        mounts.append({"name": "model-pull-secret", "mountPath": MODEL_PULL_SECRET_DIR, "readOnly": True})
    if role == "head":
        mounts.append({"name": "config", "mountPath": SERVE_CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": plan.name}})
    container["volumeMounts"] = mounts
    spec: Obj = {
        "affinity": {"nodeAffinity": pod.node_affinity(plan.match_labels, plan.worker_nodes),
                     "podAntiAffinity": pod.spread_one_per_node(plan.name)},
        "tolerations": pod.tolerations(),
        "securityContext": pod.pod_security(),
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if inits:
        spec["initContainers"] = inits
    return spec


def _env(plan: ServingPlan) -> list[Obj]:
    env = [{"name": "HOME", "value": "/tmp"}]
    if plan.model_access_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": plan.model_access_secret,
                                                                       "key": "HF_TOKEN"}}})
    if plan.model_pull_secret:
        env.append({"name": "DOCKER_CONFIG", "value": MODEL_PULL_SECRET_DIR})
    return env


def head_deployment(plan: ServingPlan, config_hash: str) -> Obj:
    probe = {"httpGet": {"path": "/healthz", "port": SERVE_PORT}, "periodSeconds": PROBE_PERIOD}
    ports = [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]
    if plan.count > 1:
        ports.append({"name": "ray-gcs", "containerPort": RAY_PORT, "protocol": "TCP"})
    container = {
        "name": "serve", "image": plan.runtime_image,
        "command": ["python", "-m", "serving.cluster", "head", "--config", SERVE_CONFIG_PATH],
        "ports": ports, "env": _env(plan), "resources": pod.gpu_resources(plan.gpus_per_node),
        # /healthz answers 200 only once the model answers; the startup probe allows the preset's load time.
        "startupProbe": {**probe, "failureThreshold": max(1, math.ceil(plan.readiness_timeout_seconds / PROBE_PERIOD))},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": SERVE_PORT}, "periodSeconds": 20, "failureThreshold": 3},
        "securityContext": pod.container_security(),
        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY,
    }
    labels = _labels(plan, "head")
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(plan.name, plan.name),
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {"kaito.sh/serve-config-hash": config_hash}},
                                  "spec": _pod_spec(plan, container, "head")}}}


def worker_deployment(plan: ServingPlan, config_hash: str) -> Obj:
    container = {
        "name": "ray-worker", "image": plan.runtime_image,
        "command": ["python", "-m", "serving.cluster", "worker", "--address", f"{plan.name}:{RAY_PORT}"],
        "env": _env(plan), "resources": pod.gpu_resources(plan.gpus_per_node),
        "securityContext": pod.container_security(),
        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY,
    }
    labels = _labels(plan, "worker")
    name = f"{plan.name}-worker"
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(name, plan.name),
            "spec": {"replicas": plan.count - 1, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {"kaito.sh/serve-config-hash": config_hash}},
                                  "spec": _pod_spec(plan, container, "worker")}}}


def service(plan: ServingPlan) -> Obj:
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVE_PORT, "protocol": "TCP"}]
    spec: Obj = {"type": "LoadBalancer" if plan.load_balancer else "ClusterIP",
                 "selector": _labels(plan, "head"), "ports": ports}
    if plan.count > 1:
        ports.append({"name": "ray-gcs", "port": RAY_PORT, "targetPort": RAY_PORT, "protocol": "TCP"})
        # Workers must reach the head's GCS before the head serves (it is Ready only once all load).
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": pod.child_meta(plan.name, plan.name), "spec": spec}


def template_deployment(plan: ServingPlan) -> Obj:
    """The user's PodTemplateSpec with our labels, node affinity and tolerations added."""
    template = plan.template or {}
    meta = dict(template.get("metadata") or {})
    labels = {**(meta.get("labels") or {}), pod.WS_LABEL: plan.name}
    meta["labels"] = labels
    spec = dict(template.get("spec") or {})
    affinity = dict(spec.get("affinity") or {})
    affinity["nodeAffinity"] = pod.node_affinity(plan.match_labels, plan.worker_nodes)
    spec["affinity"] = affinity
    theirs = list(spec.get("tolerations") or [])
    spec["tolerations"] = theirs + [t for t in pod.tolerations() if t not in theirs]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(plan.name, plan.name),
            "spec": {"replicas": plan.count, "selector": {"matchLabels": {pod.WS_LABEL: plan.name}},
                     "template": {"metadata": meta, "spec": spec}}}


def build(plan: ServingPlan) -> list[Obj]:
    if plan.template is not None:
        return [template_deployment(plan)]
    cm = config_map(plan)
    config_hash = pod.content_hash(cm["data"])
    out = [cm, head_deployment(plan, config_hash), service(plan)]
    if plan.count > 1:
        out.append(worker_deployment(plan, config_hash))
    return out
