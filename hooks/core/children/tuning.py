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

from contract import argv
from contract.tuningjob import CONFIG_DIR, CONFIG_KEY, DATA_DIR, PUSH_SECRET_DIR, RESULTS_DIR, TuningJobArgs
from contract.workspace import TuningSpec
from metacontroller.api import Obj
from presets.facts import WorkspaceFacts

from . import pod

SPEC_HASH_ANNOTATION = "kaito.sh/tuning-spec-hash"
BACKOFF_LIMIT = 2


@dataclass(frozen=True)
class TuningPlan:
    facts: WorkspaceFacts
    runtime_image: str
    default_config: Optional[Obj] = None   # used when tuning.config names no ConfigMap

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def tuning(self) -> TuningSpec:
        return self.facts.workspace.tuning

    @property
    def base_model(self) -> Optional[str]:
        """None: a preset built locally from a seed (tiny), no download."""
        return self.facts.preset.source

    @property
    def config_map_name(self) -> str:
        return self.tuning.config or f"{self.name}-tuning-config"


def config_map(plan: TuningPlan) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": pod.child_meta(plan.config_map_name, plan.name),
            "data": {CONFIG_KEY: yaml.safe_dump(plan.default_config or {}, sort_keys=False)}}


def job(plan: TuningPlan) -> Obj:
    t = plan.tuning
    src, out = t.input, t.output
    mounts = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
              {"name": "results", "mountPath": RESULTS_DIR},
              {"name": "dshm", "mountPath": "/dev/shm"}, pod.TMP_MOUNT]
    volumes = [{"name": "config", "configMap": {"name": plan.config_map_name}},
               {"name": "results", **(out.volume_source or {"emptyDir": {}})},
               pod.dshm_volume(), pod.tmp_volume()]
    env = pod.scratch_env()
    inits: list[Obj] = []
    data = input_image = None
    if src.urls:
        pass  # the entrypoint downloads them into its data directory
    elif src.image and src.image_pull_secrets:
        # A private data image is pulled by an init container with its own credentials, so the
        # main container only ever sees the push secret.
        volumes += [{"name": "data", "emptyDir": {}},
                    pod.docker_config_volume("input-pull-secret", src.image_pull_secrets[0])]
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        inits.append({"name": "data-puller", "image": plan.runtime_image,
                      "command": argv.pull_command(src.image, DATA_DIR),
                      "env": [*pod.scratch_env(), {"name": "DOCKER_CONFIG", "value": "/mnt/pull-secret"}],
                      "volumeMounts": [pod.TMP_MOUNT, {"name": "data", "mountPath": DATA_DIR},
                                       {"name": "input-pull-secret", "mountPath": "/mnt/pull-secret",
                                        "readOnly": True}],
                      "securityContext": pod.container_security(),
                      "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY})
        data = DATA_DIR
    elif src.image:
        input_image = src.image
    elif src.volume_source:
        volumes.append({"name": "data", **src.volume_source})
        mounts.append({"name": "data", "mountPath": DATA_DIR, "readOnly": True})
        data = DATA_DIR
    if out.image and out.image_push_secret:
        volumes.append(pod.docker_config_volume("push-secret", out.image_push_secret))
        mounts.append({"name": "push-secret", "mountPath": PUSH_SECRET_DIR, "readOnly": True})
        env.append({"name": "DOCKER_CONFIG", "value": PUSH_SECRET_DIR})
    command = TuningJobArgs(method=t.method.lower(), preset=plan.facts.preset.name, base_model=plan.base_model,
                            input_urls=tuple(src.urls or ()), input_image=input_image, data=data,
                            push=out.image).argv()
    labels = {pod.WS_LABEL: plan.name, pod.ROLE_LABEL: "tuning"}
    spec: Obj = {
        "restartPolicy": "Never",
        # matchLabels only: pinning hostnames would make a node change recreate a running Job.
        "affinity": {"nodeAffinity": pod.node_affinity(plan.facts.match_labels)},
        "tolerations": pod.tolerations(),
        "securityContext": pod.pod_security(),
        "enableServiceLinks": False,
        "containers": [{"name": "tuning", "image": plan.runtime_image, "command": command, "env": env,
                        "resources": pod.gpu_resources(plan.facts.gpus_per_node), "volumeMounts": mounts,
                        "securityContext": pod.container_security(),
                        "terminationMessagePolicy": pod.TERMINATION_MESSAGE_POLICY}],
        "volumes": volumes,
    }
    if inits:
        spec["initContainers"] = inits
    spec_hash = pod.content_hash({"tuning": t.model_dump(mode="json", by_alias=True, exclude_unset=True),
                                  "preset": plan.facts.preset.name, "model": plan.base_model,
                                  "image": plan.runtime_image})
    meta = pod.child_meta(plan.name, plan.name, annotations={SPEC_HASH_ANNOTATION: spec_hash})
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": BACKOFF_LIMIT,
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def build(plan: TuningPlan) -> list[Obj]:
    out = [job(plan)]
    if not plan.tuning.config:
        out.insert(0, config_map(plan))
    return out
