"""Children of an inference Workspace: head/worker Deployments, Service and the Serve ConfigMap.

Names (DESIGN.md §4): Deployment `<ws>` (Ray head + Serve), Deployment `<ws>-worker` (count > 1),
Service `<ws>` (80 -> 8000, plus 6379 when count > 1), ConfigMap `<ws>` (key serve_config.yaml,
a contract.serveconfig.ServeConfig around contract.serveargs.ServeArgs), and ServiceAccount +
RoleBinding `<ws>-runtime` through which the runtime reports its adapters on its pod (podaccess.py).

Adapters are runtime state (issue 14): their list (name, oci:// source, strength) is in the Serve
config only, and one generic init container (`adapter-prefetch`) fetches whatever the mounted
config lists into the pod's cache volume. The pod templates therefore do not change when only
adapters change; the config hash on them leaves out the live fields (contract.serveargs.LIVE_FIELDS).
An adapter on a user's volume or with a pull secret still adds a mount (Kubernetes must mount it).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Optional

import yaml

from contract import argv
from contract.paths import OCI_SCHEME
from contract.ports import RAY_PORT, SERVE_PORT, SERVICE_PORT
from contract.serveargs import AdapterArg, ServeArgs
from contract.serveconfig import (
    APP_IMPORT_PATH, SERVE_CONFIG_DIR, SERVE_CONFIG_KEY, SERVE_CONFIG_PATH, HttpOptions, ServeApplication, ServeConfig,
)
from metacontroller.api import Obj
from presets.facts import AdapterFacts, WorkspaceFacts

from . import pod, podaccess
from .names import adapter_key

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
ADAPTER_VOLUME_ROOT = "/mnt/adapter-volumes"
ADAPTER_SECRET_ROOT = "/mnt/pull-secrets"
MODEL_PULL_SECRET_DIR = "/mnt/model-pull-secret"
#: The artifacts cache the prefetch init container fills and the serving container reads (one pod volume).
CACHE_DIR = "/var/cache/kaito"
PREFETCH_CONTAINER = "adapter-prefetch"
CONFIG_HASH_ANNOTATION = "kaito.sh/serve-config-hash"
PROBE_PERIOD = 10


@dataclass(frozen=True)
class ServingPlan:
    """Everything the builders need: the Workspace's facts, the nodes chosen and the runtime image."""
    facts: WorkspaceFacts
    worker_nodes: tuple[str, ...]
    runtime_image: str

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def count(self) -> int:
        return self.facts.node_count

    @property
    def template(self) -> Optional[Obj]:
        inference = self.facts.workspace.inference
        return inference.template if inference is not None else None


def deployment_replicas(plan: ServingPlan) -> dict[str, int]:
    """Deployment name -> replicas: one head (`<ws>`) and count-1 workers, or the custom template's count."""
    if plan.template is not None:
        return {plan.name: plan.count}
    out = {plan.name: 1}
    if plan.count > 1:
        out[f"{plan.name}-worker"] = plan.count - 1
    return out


def adapter_source(adapter: AdapterFacts) -> str:
    """What the Serve config names as the adapter's source: its OCI reference, or the user's volume
    as mounted. The mount directory is the adapter's Kubernetes key, so names that differ only in
    case never share one."""
    if adapter.from_volume:
        return f"{ADAPTER_VOLUME_ROOT}/{adapter_key(adapter.name)}"
    return f"{OCI_SCHEME}{adapter.image}"


def _adapter_secret_dir(adapter: AdapterFacts) -> Optional[str]:
    return f"{ADAPTER_SECRET_ROOT}/{adapter_key(adapter.name)}" if adapter.pull_secrets and not adapter.from_volume \
        else None


def serve_args(plan: ServingPlan) -> ServeArgs:
    """The Serve application's arguments, as the contract model serving validates with."""
    f = plan.facts
    optional = {"preset": f.preset.name if f.preset else None, "model": f.model_source,
                "served_model_name": f.preset.name if f.preset else None, "adapter_refresh": f.adapter_refresh}
    adapters = [AdapterArg(name=a.name, source=adapter_source(a), strength=a.strength,
                           **({"docker_config": d} if (d := _adapter_secret_dir(a)) else {})) for a in f.adapters]
    return ServeArgs(**{k: v for k, v in optional.items() if v is not None}, adapters=adapters,
                     num_replicas=f.node_count, gpus_per_replica=f.gpus_per_node,
                     trust_remote_code=f.preset.trust_remote_code if f.preset else False)


def serve_config(plan: ServingPlan) -> ServeConfig:
    return ServeConfig(proxy_location="EveryNode", http_options=HttpOptions(host="0.0.0.0", port=SERVE_PORT),
                       applications=[ServeApplication(name="default", route_prefix="/", import_path=APP_IMPORT_PATH,
                                                      args=serve_args(plan))])


def restart_hash(config: ServeConfig) -> str:
    """Hash of what only new pods apply: the Serve config without its live fields (contract LIVE_FIELDS),
    so an adapter edit changes the ConfigMap but not the pod template."""
    dumped = config.dump()
    dumped["applications"] = [{**app, "args": a.args.restart_fields()}
                              for app, a in zip(dumped["applications"], config.applications)]
    return pod.content_hash(dumped)


@functools.lru_cache(maxsize=4096)
def _yaml_text(config_json: str) -> str:
    # YAML emitting dominates a sync's cost; the same config is rendered on every resync.
    return yaml.dump(json.loads(config_json), Dumper=_DUMPER, sort_keys=False)


def config_map(plan: ServingPlan, config: ServeConfig) -> Obj:
    text = _yaml_text(json.dumps(config.dump()))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": pod.child_meta(plan.name, plan.name),
            "data": {SERVE_CONFIG_KEY: text}}


def _adapter_parts(plan: ServingPlan) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(prefetch mounts, pod volumes, serving-container mounts) that adapters add.

    Image adapters add nothing: their list lives in the Serve config, and the one prefetch init
    container reads it from there. Only what Kubernetes must mount depends on the list: an
    adapter's own volume (mounted read-only for serving) and an adapter's pull secret."""
    prefetch_mounts, volumes, serve_mounts = [], [], []
    for adapter in plan.facts.adapters:
        key = adapter_key(adapter.name)
        if adapter.from_volume:
            volumes.append({"name": f"adapter-volume-{key}", **adapter.volume_source})
            serve_mounts.append({"name": f"adapter-volume-{key}", "mountPath": adapter_source(adapter), "readOnly": True})
        elif (secret_dir := _adapter_secret_dir(adapter)) is not None:
            vol = f"adapter-pull-secret-{key}"
            volumes.append(pod.docker_config_volume(vol, adapter.pull_secrets[0]))
            mount = {"name": vol, "mountPath": secret_dir, "readOnly": True}
            prefetch_mounts.append(mount)
            serve_mounts.append(dict(mount))
    return prefetch_mounts, volumes, serve_mounts


def _prefetch(plan: ServingPlan, secret_mounts: list[Obj]) -> Obj:
    """The one init container: fetch every adapter the mounted Serve config lists into the pod's cache
    (`kaito pull --from-serve-config`), so the first requests find them local; the list is not in the template."""
    return {"name": PREFETCH_CONTAINER, "image": plan.runtime_image,
            "command": argv.prefetch_command(SERVE_CONFIG_PATH),
            "env": pod.scratch_env(CACHE_DIR),
            "volumeMounts": [pod.TMP_MOUNT, {"name": "config", "mountPath": SERVE_CONFIG_DIR, "readOnly": True},
                             {"name": "cache", "mountPath": CACHE_DIR}, *secret_mounts],
            "securityContext": pod.container_security(),
            "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY}


def _labels(plan: ServingPlan, role: str) -> Obj:
    return {pod.WS_LABEL: plan.name, pod.ROLE_LABEL: role}


def _pod_spec(plan: ServingPlan, container: Obj) -> Obj:
    prefetch_mounts, adapter_volumes, adapter_mounts = _adapter_parts(plan)
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, pod.TMP_MOUNT,
              {"name": "config", "mountPath": SERVE_CONFIG_DIR, "readOnly": True},
              {"name": "cache", "mountPath": CACHE_DIR}] + adapter_mounts
    volumes = [pod.dshm_volume(), pod.tmp_volume(), {"name": "config", "configMap": {"name": plan.name}},
               {"name": "cache", "emptyDir": {}}] + adapter_volumes
    if plan.facts.model_pull_secret:
        volumes.append(pod.docker_config_volume("model-pull-secret", plan.facts.model_pull_secret))
        mounts.append({"name": "model-pull-secret", "mountPath": MODEL_PULL_SECRET_DIR, "readOnly": True})
    container["volumeMounts"] = mounts
    return {
        "affinity": {"nodeAffinity": pod.node_affinity(plan.facts.match_labels, plan.worker_nodes),
                     "podAntiAffinity": pod.spread_one_per_node(plan.name)},
        "tolerations": pod.tolerations(),
        "securityContext": pod.pod_security(),
        **podaccess.pod_spec_fields(plan.name),  # the runtime patches its adapters' condition on its pod
        "enableServiceLinks": False,
        "initContainers": [_prefetch(plan, prefetch_mounts)],
        "containers": [container],
        "volumes": volumes,
    }


def _env(plan: ServingPlan) -> list[Obj]:
    env = pod.scratch_env(CACHE_DIR) + podaccess.pod_env()
    if plan.facts.model_access_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": plan.facts.model_access_secret,
                                                                       "key": "HF_TOKEN"}}})
    if plan.facts.model_pull_secret:
        env.append({"name": "DOCKER_CONFIG", "value": MODEL_PULL_SECRET_DIR})
    return env


def head_deployment(plan: ServingPlan, config_hash: str) -> Obj:
    probe = {"httpGet": {"path": "/healthz", "port": SERVE_PORT}, "periodSeconds": PROBE_PERIOD}
    ports = [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]
    if plan.count > 1:
        ports.append({"name": "ray-gcs", "containerPort": RAY_PORT, "protocol": "TCP"})
    container = {
        "name": "serve", "image": plan.runtime_image,
        "command": argv.head_command(SERVE_CONFIG_PATH),
        "ports": ports, "env": _env(plan), "resources": pod.gpu_resources(plan.facts.gpus_per_node),
        # /healthz answers 200 only once the model answers; the startup probe allows the preset's load time.
        "startupProbe": {**probe, "failureThreshold": max(1, math.ceil(plan.facts.readiness_timeout_seconds / PROBE_PERIOD))},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": SERVE_PORT}, "periodSeconds": 20, "failureThreshold": 3},
        "securityContext": pod.container_security(),
        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY,
    }
    labels = _labels(plan, "head")
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(plan.name, plan.name),
            "spec": {"replicas": deployment_replicas(plan)[plan.name], "selector": {"matchLabels": labels},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                                  "spec": _pod_spec(plan, container)}}}


def worker_deployment(plan: ServingPlan, config_hash: str) -> Obj:
    container = {
        "name": "ray-worker", "image": plan.runtime_image,
        "command": argv.worker_command(f"{plan.name}:{RAY_PORT}"),
        "env": _env(plan), "resources": pod.gpu_resources(plan.facts.gpus_per_node),
        "securityContext": pod.container_security(),
        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY,
    }
    labels = _labels(plan, "worker")
    name = f"{plan.name}-worker"
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(name, plan.name),
            "spec": {"replicas": deployment_replicas(plan)[name], "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                                  "spec": _pod_spec(plan, container)}}}


def service(plan: ServingPlan) -> Obj:
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVE_PORT, "protocol": "TCP"}]
    spec: Obj = {"type": "LoadBalancer" if plan.facts.load_balancer else "ClusterIP",
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
    affinity["nodeAffinity"] = pod.node_affinity(plan.facts.match_labels, plan.worker_nodes)
    spec["affinity"] = affinity
    theirs = list(spec.get("tolerations") or [])
    spec["tolerations"] = theirs + [t for t in pod.tolerations() if t not in theirs]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod.child_meta(plan.name, plan.name),
            "spec": {"replicas": deployment_replicas(plan)[plan.name], "selector": {"matchLabels": {pod.WS_LABEL: plan.name}},
                     "template": {"metadata": meta, "spec": spec}}}


def build(plan: ServingPlan) -> list[Obj]:
    if plan.template is not None:
        return [template_deployment(plan)]
    config = serve_config(plan)
    config_hash = restart_hash(config)
    out = [config_map(plan, config), head_deployment(plan, config_hash), service(plan),
           podaccess.service_account(plan.name), podaccess.role_binding(plan.name, plan.facts.namespace)]
    if plan.count > 1:
        out.append(worker_deployment(plan, config_hash))
    return out
