"""Pod-spec pieces every Workspace workload shares: labels, scheduling, security, volumes."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from contract.paths import CACHE_DIR_ENV
from metacontroller.api import Obj

WS_LABEL = "kaito.sh/workspace"
ROLE_LABEL = "kaito.sh/role"
GPU = "nvidia.com/gpu"
#: The kubelet keeps a container's last log lines as its termination message when it wrote none, so a
#: Workspace condition can quote the cause (our entrypoints end with one clear error line).
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
TOLERATIONS = (
    {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
)


def content_hash(value: Any, length: int = 16) -> str:
    """Stable short hash of JSON-able data (sorted keys), for change-revealing annotations."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:length]


def child_meta(name: str, ws: str, **extra: Any) -> Obj:
    meta: Obj = {"name": name, "labels": {WS_LABEL: ws}}
    meta.update(extra)
    return meta


def tolerations() -> list[Obj]:
    return [dict(t) for t in TOLERATIONS]


def node_affinity(match_labels: Mapping[str, str], hostnames: Iterable[str] = ()) -> Obj:
    """Required node affinity: every matchLabel (In [value]) and, once known, the chosen nodes."""
    exprs = [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(match_labels.items())]
    hosts = sorted(set(hostnames))
    if hosts:
        exprs.append({"key": "kubernetes.io/hostname", "operator": "In", "values": hosts})
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}


def spread_one_per_node(ws: str) -> Obj:
    """One serving pod per node: each Ray node owns its node's GPUs."""
    return {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {WS_LABEL: ws}}, "topologyKey": "kubernetes.io/hostname"}]}


def pod_security() -> Obj:
    return {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> Obj:
    """Every container we emit: non-root (pod_security), nothing to escalate, and a read-only root
    filesystem; what a container writes goes to the `tmp` emptyDir (TMP_MOUNT) or its own volumes."""
    return {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True}


#: The writable scratch space of a container whose root filesystem is read-only: HOME, Ray's
#: session directory and library caches (torch, Hugging Face) all live under /tmp.
TMP_DIR = "/tmp"
TMP_MOUNT = {"name": "tmp", "mountPath": TMP_DIR}


def tmp_volume() -> Obj:
    return {"name": "tmp", "emptyDir": {}}


def scratch_env(cache_dir: str = f"{TMP_DIR}/kaito-cache") -> list[Obj]:
    """HOME, HF_HOME and the artifacts cache (KAITO_CACHE_DIR) on writable volumes: the image's home
    is read-only. `cache_dir` is the pod's shared cache volume where it has one."""
    return [{"name": "HOME", "value": TMP_DIR}, {"name": "HF_HOME", "value": f"{TMP_DIR}/huggingface"},
            {"name": CACHE_DIR_ENV, "value": cache_dir}]


def gpu_resources(gpus: int) -> Obj:
    if gpus <= 0:
        return {}
    return {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}


def dshm_volume() -> Obj:
    return {"name": "dshm", "emptyDir": {"medium": "Memory"}}


def docker_config_volume(volume_name: str, secret_name: str) -> Obj:
    """A dockerconfigjson Secret projected as `config.json`, the layout DOCKER_CONFIG expects."""
    return {"name": volume_name, "secret": {"secretName": secret_name, "defaultMode": 0o440,
                                            "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}
