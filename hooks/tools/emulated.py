"""An emulated cluster wired to these hooks: the two CompositeControllers of deploy/, Metacontroller's
emulator, and Karpenter/Deployment/Job stand-ins. Used by `kaito render` (in-process) and the
integration tests (over HTTP against gunicorn).

The controller definitions here mirror deploy/base/controllers.yaml plus an overlay's claim
rule; a test compares them with the kustomize output so they cannot drift.
"""
from __future__ import annotations

import json
import urllib.parse
from typing import Callable, Iterable, Optional

import presets
from presets.facts import UNKNOWN_SKU_GPUS
from hooks.core.routes import BY_PATH, answer
from hooks.core.settings import ClaimApi, Settings
from metacontroller.api import Obj
from metacontroller.cluster import Cluster
from metacontroller.emulator import CompositeControllerEmulator
from metacontroller.errors import HookCallError
from metacontroller.standins import KarpenterStandIn, WorkloadStandIn
from metacontroller.world import World

HOOK_SERVICE = {"name": "kaito-hooks", "namespace": "kaito-system", "port": 80}


def _hooks(prefix: str) -> Obj:
    return {name: {"version": "v2", "webhook": {"service": dict(HOOK_SERVICE), "path": f"/{prefix}/{name}",
                                                "timeout": "10s"}}
            for name in ("customize", "sync")}


def controllers(claim: ClaimApi) -> tuple[Obj, Obj]:
    """(Workspace controller, NodeProvisioner controller) as deploy/ installs them."""
    ws = {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
          "metadata": {"name": "kaito-workspace"},
          "spec": {"generateSelector": True, "resyncPeriodSeconds": 60,
                   "parentResource": {"apiVersion": "kaito.sh/v1alpha1", "resource": "workspaces"},
                   "childResources": [
                       {"apiVersion": "apps/v1", "resource": "deployments", "updateStrategy": {"method": "InPlace"}},
                       {"apiVersion": "v1", "resource": "services", "updateStrategy": {"method": "InPlace"}},
                       {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
                       {"apiVersion": "batch/v1", "resource": "jobs", "updateStrategy": {"method": "Recreate"}},
                       {"apiVersion": "v1", "resource": "serviceaccounts", "updateStrategy": {"method": "InPlace"}},
                       {"apiVersion": "rbac.authorization.k8s.io/v1", "resource": "rolebindings",
                        "updateStrategy": {"method": "InPlace"}}],
                   "hooks": _hooks("workspace")}}
    np = {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
          "metadata": {"name": "kaito-nodeprovisioner"},
          "spec": {"generateSelector": True, "resyncPeriodSeconds": 60,
                   "parentResource": {"apiVersion": "kaito.sh/v1alpha1", "resource": "nodeprovisioners"},
                   "childResources": [{"apiVersion": claim.api_version, "resource": claim.resource,
                                       "updateStrategy": {"method": "OnDelete"}}],
                   "hooks": _hooks("nodeprovisioner")}}
    return ws, np


def default_nodeprovisioner() -> Obj:
    """As the overlays install it: the claim API is the hook server's setting, not a spec field."""
    return {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner", "metadata": {"name": "default"},
            "spec": {}}


def sku_gpus(instance_type: str) -> int:
    """GPUs of a node the Karpenter stand-in brings up for this instance type."""
    sku = presets.get_sku(instance_type)
    return sku.gpus if sku else UNKNOWN_SKU_GPUS


def inprocess_transport(settings: Settings, now: Callable[[], str]) -> Callable[[str, Obj, float], bytes]:
    """Serves `hooks.core.routes.ROUTES` in-process, with the Flask layer's status codes (non-200 -> call error)."""

    def call(url: str, body: Obj, timeout: float) -> bytes:  # noqa: ARG001 - same signature as HTTP
        status, payload = answer(BY_PATH[urllib.parse.urlsplit(url).path], json.dumps(body).encode(), settings, now())
        if status != 200:
            raise HookCallError(f"unsupported status code: {status} body: {payload[:500]!r}")
        return payload

    return call


def make_world(settings: Settings, *, base_url: Optional[str] = None,
               transport: Optional[Callable[[str, Obj, float], bytes]] = None,
               unavailable: Iterable[str] = (), clock: Optional[Callable[[], str]] = None,
               job_run_ticks: int = 1) -> World:
    """A cluster with the default NodeProvisioner installed and every stand-in running."""
    cluster = Cluster(clock=clock)
    ws_cc, np_cc = controllers(settings.claim_api)
    emulators = [CompositeControllerEmulator(cluster, cc, base_url=base_url, transport=transport)
                 for cc in (np_cc, ws_cc)]
    cluster.create(default_nodeprovisioner())
    standins = [KarpenterStandIn(cluster, sku_gpus, set(unavailable)),
                WorkloadStandIn(cluster, job_run_ticks=job_run_ticks)]
    return World(cluster, emulators, standins)
