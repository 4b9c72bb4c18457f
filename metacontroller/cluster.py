"""An in-memory API server: typed object store with generations, UIDs and garbage collection.

Just enough of Kubernetes for the emulator and the controller stand-ins: create/update/delete,
`metadata.generation` bumped on spec changes, status writes that never touch the spec,
finalizers holding deletion, and background garbage collection of objects whose controller
owner is gone.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from .api import Obj
from .errors import ApplyError
from .selectors import label_selector_matches


@dataclass(frozen=True)
class ResourceType:
    api_version: str
    kind: str
    plural: str
    namespaced: bool


#: The kinds this project touches. Register more with `Cluster.register`.
KNOWN_TYPES = (
    ResourceType("v1", "Namespace", "namespaces", False),
    ResourceType("v1", "Node", "nodes", False),
    ResourceType("v1", "Service", "services", True),
    ResourceType("v1", "ConfigMap", "configmaps", True),
    ResourceType("v1", "Secret", "secrets", True),
    ResourceType("v1", "Pod", "pods", True),
    ResourceType("v1", "ServiceAccount", "serviceaccounts", True),
    ResourceType("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    ResourceType("apps/v1", "Deployment", "deployments", True),
    ResourceType("batch/v1", "Job", "jobs", True),
    ResourceType("karpenter.sh/v1alpha5", "Machine", "machines", False),
    ResourceType("karpenter.sh/v1", "NodeClaim", "nodeclaims", False),
    ResourceType("kaito.sh/v1alpha1", "Workspace", "workspaces", True),
    ResourceType("kaito.sh/v1alpha1", "NodeProvisioner", "nodeprovisioners", False),
)

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name


class Cluster:
    """Objects keyed by (apiVersion, kind, namespace, name). Every read returns a deep copy."""

    def __init__(self, clock: Callable[[], str] | None = None) -> None:
        self._objects: dict[Key, Obj] = {}
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)
        self.clock = clock or (lambda: "2026-01-01T00:00:00Z")
        for t in KNOWN_TYPES:
            self.register(t)

    # -- types ---------------------------------------------------------------------------
    def register(self, rtype: ResourceType) -> None:
        self._types[(rtype.api_version, rtype.kind)] = rtype

    def type_of(self, api_version: str, kind: str) -> ResourceType:
        try:
            return self._types[(api_version, kind)]
        except KeyError as exc:
            raise ApplyError(f"unknown kind {kind}.{api_version}") from exc

    def type_for_resource(self, api_version: str, plural: str) -> ResourceType:
        for t in self._types.values():
            if t.api_version == api_version and t.plural == plural:
                return t
        raise ApplyError(f"unknown resource {plural} in {api_version}")

    def _key(self, obj: Obj) -> Key:
        t = self.type_of(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if t.namespaced else ""
        if t.namespaced and not ns:
            raise ApplyError(f"{obj['kind']} {meta['name']} is namespaced but has no namespace")
        if not t.namespaced and meta.get("namespace"):
            raise ApplyError(f"{obj['kind']} {meta['name']} is cluster-scoped but names a namespace")
        return (obj["apiVersion"], obj["kind"], ns, meta["name"])

    # -- reads ---------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Optional[Obj]:
        obj = self._objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, api_version: str, kind: str, namespace: Optional[str] = None,
             selector: Optional[Obj] = None) -> list[Obj]:
        out = []
        for (av, k, ns, _), obj in sorted(self._objects.items()):
            if av != api_version or k != kind or (namespace is not None and ns != namespace):
                continue
            if selector is not None and not label_selector_matches(selector, obj["metadata"].get("labels")):
                continue
            out.append(copy.deepcopy(obj))
        return out

    def all_objects(self) -> Iterator[Obj]:
        for obj in list(self._objects.values()):
            yield copy.deepcopy(obj)

    # -- writes --------------------------------------------------------------------------
    def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        key = self._key(obj)
        if key in self._objects:
            raise ApplyError(f"{obj['kind']} {key[2]}/{key[3]} already exists")
        meta = obj["metadata"]
        meta["uid"] = f"uid-{next(self._uids):06d}"
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        meta["creationTimestamp"] = self.clock()
        self._objects[key] = obj
        return copy.deepcopy(obj)

    def update(self, obj: Obj) -> Obj:
        """Replace everything except status; bump generation when anything but metadata changed."""
        obj = copy.deepcopy(obj)
        key = self._key(obj)
        current = self._objects.get(key)
        if current is None:
            raise ApplyError(f"{obj['kind']} {key[2]}/{key[3]} not found")
        obj["metadata"]["uid"] = current["metadata"]["uid"]
        obj["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"]
        if "deletionTimestamp" in current["metadata"]:
            obj["metadata"]["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
        if "status" in current:
            obj["status"] = current["status"]
        else:
            obj.pop("status", None)
        spec_changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")} != \
            {k: v for k, v in current.items() if k not in ("metadata", "status")}
        obj["metadata"]["generation"] = current["metadata"]["generation"] + (1 if spec_changed else 0)
        if obj == current:
            return copy.deepcopy(current)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self._objects[key] = obj
        self._maybe_finish_deletion(key)
        return copy.deepcopy(obj)

    def update_status(self, obj: Obj, status: Optional[Obj]) -> Obj:
        key = self._key(obj)
        current = self._objects.get(key)
        if current is None:
            raise ApplyError(f"{obj['kind']} {key[2]}/{key[3]} not found")
        if current.get("status") != status:
            current["status"] = copy.deepcopy(status)
            current["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(current)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        """Delete (or mark for deletion while finalizers remain); garbage-collects dependents."""
        key = (api_version, kind, namespace, name)
        obj = self._objects.get(key)
        if obj is None:
            return False
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", self.clock())
            return True
        del self._objects[key]
        self._collect_garbage()
        return True

    def _maybe_finish_deletion(self, key: Key) -> None:
        obj = self._objects[key]
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del self._objects[key]
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Background propagation: delete objects whose every owner is gone, until a fixed point."""
        while True:
            live = {o["metadata"]["uid"] for o in self._objects.values()}
            orphans = [k for k, o in self._objects.items()
                       if (refs := o["metadata"].get("ownerReferences"))
                       and not any(r.get("uid") in live for r in refs)]
            if not orphans:
                return
            for k in orphans:
                obj = self._objects.get(k)
                if obj is None:
                    continue
                if obj["metadata"].get("finalizers"):
                    obj["metadata"].setdefault("deletionTimestamp", self.clock())
                    obj["metadata"]["ownerReferences"] = []
                else:
                    del self._objects[k]
