"""Typed models of Metacontroller's CompositeController hook protocol, version v2.

Shapes follow metacontroller `pkg/controller/composite/api/v2/hooks.go`:
children/related maps are keyed `Kind.apiVersion` (e.g. `Deployment.apps/v1`), then
`namespace/name` for namespaced objects and plain `name` for cluster-scoped ones.
The reply models forbid extra keys because v2 hooks default to strict unmarshalling.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, Field

Obj = dict[str, Any]
# `Kind.apiVersion` -> (`namespace/name` | `name`) -> object
ObjectMap = dict[str, dict[str, Obj]]

#: The only keys a v2 sync/finalize reply may carry in strict mode.
SYNC_RESPONSE_KEYS = frozenset({"status", "children", "resyncAfterSeconds", "finalized"})
#: The only key a customize reply carries.
CUSTOMIZE_RESPONSE_KEYS = frozenset({"relatedResources"})


def group_key(api_version: str, kind: str) -> str:
    """The outer map key Metacontroller uses for a kind: `Kind.apiVersion`."""
    return f"{kind}.{api_version}"


def object_key(obj: Obj) -> str:
    """The v2 inner map key: `namespace/name` for namespaced objects, `name` otherwise."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def build_object_map(groups: Iterable[tuple[str, str]], objects: Iterable[Obj]) -> ObjectMap:
    """Group objects by `Kind.apiVersion`; every group in `groups` is present, even when empty."""
    out: ObjectMap = {group_key(av, k): {} for av, k in groups}
    for obj in objects:
        out.setdefault(group_key(obj["apiVersion"], obj["kind"]), {})[object_key(obj)] = obj
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LabelSelectorRequirement(_Model):
    key: str = Field(description="label key")
    operator: str = Field(description="In, NotIn, Exists or DoesNotExist")
    values: Optional[list[str]] = Field(default=None, description="values for In/NotIn")


class LabelSelector(_Model):
    matchLabels: Optional[dict[str, str]] = Field(default=None, description="labels that must all match")
    matchExpressions: Optional[list[LabelSelectorRequirement]] = Field(
        default=None, description="set-based requirements, all must match")


class RelatedResourceRule(_Model):
    """One entry of a customize reply: which objects to send as `related`."""
    apiVersion: str = Field(description="API version of the related objects, e.g. `v1` or `karpenter.sh/v1`")
    resource: str = Field(description="plural lowercase resource name, e.g. `nodes`")
    labelSelector: Optional[LabelSelector] = Field(default=None, description="`{}` selects all")
    namespaceSelector: Optional[LabelSelector] = Field(default=None, description="namespaces by labels")
    namespace: Optional[str] = Field(default=None, description="a single namespace")
    names: Optional[list[str]] = Field(default=None, description="exact names; excludes both selectors")


class CustomizeRequest(_Model):
    controller: Obj = Field(description="the whole CompositeController object")
    parent: Obj = Field(description="the parent object")


class CustomizeResponse(_Model):
    relatedResources: list[RelatedResourceRule] = Field(default_factory=list,
                                                        description="rules selecting related objects")


class SyncRequest(_Model):
    """Body of a sync or finalize call (`finalizing` tells them apart)."""
    controller: Obj = Field(description="the whole CompositeController object")
    parent: Obj = Field(description="the parent object")
    children: ObjectMap = Field(default_factory=dict, description="observed owned children, v2 keyed")
    related: ObjectMap = Field(default_factory=dict, description="objects selected by the customize reply")
    finalizing: bool = Field(default=False, description="true when called as the finalize hook")


class SyncResponse(_Model):
    """Reply to sync/finalize. A 200 reply deletes every observed child it omits."""
    status: Optional[Obj] = Field(default=None, description="replaces the parent's .status completely")
    children: list[Optional[Obj]] = Field(default_factory=list, description="full desired children")
    resyncAfterSeconds: float = Field(default=0, description="one-time requeue after this many seconds")
    finalized: bool = Field(default=False, description="finalize hook only: remove the finalizer")

    def to_wire(self) -> Obj:
        """The JSON-ready dict with only the keys v2 strict mode accepts, zero values omitted."""
        out: Obj = {"status": self.status, "children": [c for c in self.children if c is not None]}
        if self.resyncAfterSeconds:
            out["resyncAfterSeconds"] = self.resyncAfterSeconds
        if self.finalized:
            out["finalized"] = True
        return out
