"""What lets a serving pod report its adapters on its own status (contract/podstatus.py).

Each inference Workspace gets a ServiceAccount `<ws>-runtime` and a RoleBinding of that account to the
one ClusterRole deploy/base ships (`RUNTIME_CLUSTER_ROLE`: get/patch on pods/status, nothing else), and
its serving pods run as that account with the pod name and namespace from the downward API. The token
is mounted only in these pods: the account itself does not automount, the pod spec asks for it. The
hook server creates nothing itself (Metacontroller applies these children); it still holds no credentials.
"""
from __future__ import annotations

from contract.podstatus import POD_NAME_ENV, POD_NAMESPACE_ENV, RUNTIME_CLUSTER_ROLE
from metacontroller.api import Obj

from . import pod

RBAC_GROUP = "rbac.authorization.k8s.io"


def account_name(ws: str) -> str:
    return f"{ws}-runtime"


def service_account(ws: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": pod.child_meta(account_name(ws), ws),
            "automountServiceAccountToken": False}


def role_binding(ws: str, namespace: str) -> Obj:
    """`namespace` is the Workspace's (a ServiceAccount subject names its namespace)."""
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding", "metadata": pod.child_meta(account_name(ws), ws),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": RUNTIME_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account_name(ws), "namespace": namespace}]}


def pod_spec_fields(ws: str) -> Obj:
    return {"serviceAccountName": account_name(ws), "automountServiceAccountToken": True}


def pod_env() -> list[Obj]:
    return [{"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": POD_NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
