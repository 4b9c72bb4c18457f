"""The 3-way merge Metacontroller's default `dynamic-apply` strategy performs (pkg/dynamic/apply).

`merge(observed, last_applied, desired)` emulates `kubectl apply`: fields in `desired` win, fields
that were in `last_applied` but are gone from `desired` are removed, anything else in `observed`
(set by other controllers, defaults) is kept. Lists of objects whose items all share a known merge
key are merged as associative lists; any other list is replaced.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Mapping, Optional

__all__ = [
    "LAST_APPLIED", "MERGE_KEYS", "SYSTEM_FIELDS", "merge", "last_applied_of", "as_last_applied",
    "with_last_applied", "apply_update", "last_applied_children",
]

LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"
#: Priority order of conventional list merge keys (`knownMergeKeys` in apply.go).
MERGE_KEYS = ("containerPort", "port", "mountPath", "name", "uid", "ip", "path")
#: Metadata fields owned by the API server; reverted before diffing (`revertObjectMetaSystemFields`).
SYSTEM_FIELDS = ("selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
                 "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields")


def _merge_key(*lists: Optional[list]) -> Optional[str]:
    items = [i for lst in lists if lst for i in lst]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def _merge_list(observed: Any, last: Any, desired: list) -> list:
    obs = observed if isinstance(observed, list) else []
    lst = last if isinstance(last, list) else []
    key = _merge_key(obs, lst, desired)
    if key is None:
        return copy.deepcopy(desired)
    obs_by = {i[key]: i for i in obs}
    desired_keys = {i[key] for i in desired}
    dropped = {i[key] for i in lst} - desired_keys
    out = [merge(obs_by.get(i[key]), next((x for x in lst if x[key] == i[key]), None), i) for i in desired]
    out += [copy.deepcopy(i) for i in obs if i[key] not in desired_keys and i[key] not in dropped]
    return out


def merge(observed: Any, last_applied: Any, desired: Any) -> Any:
    """3-way merge of one value; returns a new object and never mutates its inputs."""
    if isinstance(desired, dict):
        base = observed if isinstance(observed, dict) else {}
        last = last_applied if isinstance(last_applied, dict) else {}
        out = {k: copy.deepcopy(v) for k, v in base.items() if not (k in last and k not in desired)}
        for k, v in desired.items():
            out[k] = merge(base.get(k), last.get(k), v)
        return out
    if isinstance(desired, list):
        return _merge_list(observed, last_applied, desired)
    return desired


def last_applied_of(obj: dict) -> Optional[dict]:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    return json.loads(raw) if raw else None


def as_last_applied(obj: dict) -> dict:
    """The child as its controller last asked for it: replying with it changes and deletes nothing.

    The last-applied annotation when there is one (Metacontroller writes it on every create and
    update); otherwise the observed object without status and without what the API server sets in
    metadata (only name, namespace and labels are kept there).
    """
    applied = last_applied_of(obj)
    if applied is not None:
        return applied
    meta = obj.get("metadata") or {}
    keep = {"name": meta.get("name"), "namespace": meta.get("namespace"), "labels": meta.get("labels") or {}}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {k: v for k, v in keep.items() if v is not None},
            **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}}


def with_last_applied(desired: dict) -> dict:
    """A copy of `desired` carrying itself (without the annotation) as the last-applied annotation."""
    out = copy.deepcopy(desired)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    return out


def apply_update(observed: dict, desired: dict) -> dict:
    """The object an InPlace update writes: merged, with status and system metadata reverted to observed."""
    merged = merge(observed, last_applied_of(observed), with_last_applied(desired))
    if "status" in observed:
        merged["status"] = copy.deepcopy(observed["status"])
    else:
        merged.pop("status", None)
    for field in SYSTEM_FIELDS:
        if field in observed.get("metadata", {}):
            merged["metadata"][field] = observed["metadata"][field]
        else:
            merged["metadata"].pop(field, None)
    return merged


def last_applied_children(children: Mapping[str, Mapping[str, dict]]) -> list[dict]:
    """Every observed child of a v2 `children` map as last applied, in map-key order."""
    return [as_last_applied(children[group][key]) for group in sorted(children) for key in sorted(children[group])]
