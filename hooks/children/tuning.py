"""Children of a tuning Workspace: Job `<ws>` and, without a user config, ConfigMap `<ws>-tuning-config`.

The Job runs the tuning entrypoint (`python -m tuning`, tuning/cli.py) in the runtime image: no privileged
sidecar; the adapter is pushed by the entrypoint itself with the push Secret mounted as a
DOCKER_CONFIG directory (never copied into env or args). `backoffLimit: 2` retries a lost pod;
with an emptyDir output a retry starts training again from scratch, while an `output.volumeSource`
keeps `/mnt/results` (and any checkpoints in it) across pod replacements.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import yaml

from metacontroller.api import Obj

from . import pod

RESULTS = "/mnt/results"
DATA = "/mnt/data"
CONFIG_KEY = "training_config.yaml"
SPEC_HASH_ANNOTATION = "kaito.sh/tuning-spec-hash"
BACKOFF_LIMIT = 2


@dataclass(frozen=True)
class TuningPlan:
    namespace: str
    name: str
    tuning: Obj                 # raw TuningSpec dict (camelCase)
    preset: str
    base_model: Optional[str]   # None: a preset built locally from a seed (tiny), no download
    match_labels: dict[str, str]
    gpus_per_node: int
    runtime_image: str
    default_config: Optional[Obj] = None   # used when tuning.config names no ConfigMap

    @property
    def config_map_name(self) -> str:
        return self.tuning.get("config") or f"{self.name}-tuning-config"


def config_map(plan: TuningPlan) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": pod.child_meta(plan.config_map_name, plan.name),
            "data": {CONFIG_KEY: yaml.safe_dump(plan.default_config or {}, sort_keys=False)}}


def job(plan: TuningPlan) -> Obj:
    t = plan.tuning
    method = str(t.get("method") or "lora").lower()
    src, out = t.get("input") or {}, t.get("output") or {}
    args = ["python", "-m", "tuning", "--preset", plan.preset, "--method", method,
            "--config", f"/mnt/config/{CONFIG_KEY}", "--output", RESULTS]
    if plan.base_model:
        args += ["--base-model", plan.base_model]
    mounts = [{"name": "config", "mountPath": "/mnt/config", "readOnly": True},
              {"name": "results", "mountPath": RESULTS},
              {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [{"name": "config", "configMap": {"name": plan.config_map_name}},
               {"name": "results", **(out.get("volumeSource") or {"emptyDir": {}})},
               pod.dshm_volume()]
    env = [{"name": "HOME", "value": "/tmp"}]
    inits: list[Obj] = []
    if src.get("urls"):
        for url in src["urls"]:
            args += ["--input-url", url]
    elif src.get("image") and src.get("imagePullSecrets"):
        # A private data image is pulled by an init container with its own credentials, so the
        # main container only ever sees the push secret.
        volumes += [{"name": "data", "emptyDir": {}},
                    pod.docker_config_volume("input-pull-secret", src["imagePullSecrets"][0])]
        mounts.append({"name": "data", "mountPath": DATA})
        inits.append({"name": "data-puller", "image": plan.runtime_image,
                      "command": ["kaito", "pull", src["image"], DATA],
                      "env": [{"name": "DOCKER_CONFIG", "value": "/mnt/pull-secret"}],
                      "volumeMounts": [{"name": "data", "mountPath": DATA},
                                       {"name": "input-pull-secret", "mountPath": "/mnt/pull-secret",
                                        "readOnly": True}],
                      "securityContext": pod.container_security(),
                      "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY})
        args += ["--data", DATA]
    elif src.get("image"):
        args += ["--input-image", src["image"]]
    elif src.get("volumeSource"):
        volumes.append({"name": "data", **src["volumeSource"]})
        mounts.append({"name": "data", "mountPath": DATA, "readOnly": True})
        args += ["--data", DATA]
    if out.get("image"):
        args += ["--push", out["image"]]
        if out.get("imagePushSecret"):
            volumes.append(pod.docker_config_volume("push-secret", out["imagePushSecret"]))
            mounts.append({"name": "push-secret", "mountPath": "/mnt/push-secret", "readOnly": True})
            env.append({"name": "DOCKER_CONFIG", "value": "/mnt/push-secret"})
    labels = {pod.WS_LABEL: plan.name, pod.ROLE_LABEL: "tuning"}
    spec: Obj = {
        "restartPolicy": "Never",
        # matchLabels only: pinning hostnames would make a node change recreate a running Job.
        "affinity": {"nodeAffinity": pod.node_affinity(plan.match_labels)},
        "tolerations": pod.tolerations(),
        "securityContext": pod.pod_security(),
        "enableServiceLinks": False,
        "containers": [{"name": "tuning", "image": plan.runtime_image, "command": args, "env": env,
                        "resources": pod.gpu_resources(plan.gpus_per_node), "volumeMounts": mounts,
                        "securityContext": pod.container_security(),
                        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY}],
        "volumes": volumes,
    }
    if inits:
        spec["initContainers"] = inits
    spec_hash = pod.content_hash({"tuning": t, "preset": plan.preset, "model": plan.base_model,
                                  "image": plan.runtime_image})
    meta = pod.child_meta(plan.name, plan.name, annotations={SPEC_HASH_ANNOTATION: spec_hash})
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": BACKOFF_LIMIT,
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def build(plan: TuningPlan) -> list[Obj]:
    out = [job(plan)]
    if not plan.tuning.get("config"):
        out.insert(0, config_map(plan))
    return out
