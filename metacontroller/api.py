"""Typed models of Metacontroller's CompositeController hook protocol, version v2.

Shapes follow metacontroller `pkg/controller/composite/api/v2/hooks.go`:
children/related maps are keyed `Kind.apiVersion` (e.g. `Deployment.apps/v1`), then
`namespace/name` for namespaced objects and plain `name` for cluster-scoped ones.
The reply models forbid extra keys because v2 hooks default to strict unmarshalling.

Requests are decoded once, by `decode`: JSON (with nesting, text and number checks) -> the model.
Every shape problem is a `RequestError` naming its JSON path (a 4xx for a hook server), so what
comes after the decode sees typed objects whose identity, map keys and status fields are sound.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Optional, TypeVar

import pydantic_core
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr,
                      ValidationError, model_validator)

from .apply import LAST_APPLIED

__all__ = [
    "Obj", "ObjectMap", "SYNC_RESPONSE_KEYS", "CUSTOMIZE_RESPONSE_KEYS", "group_key", "object_key",
    "build_object_map", "LabelSelectorRequirement", "LabelSelector", "RelatedResourceRule",
    "CustomizeResponse", "SyncResponse", "MAX_NESTING", "RequestError", "json_path", "ObjectMeta",
    "Condition", "ObjectStatus", "KubeObject", "TypedObjectMap", "CustomizeRequest", "SyncRequest",
    "parse_json", "encode_reply", "decode",
]

#: A Kubernetes object (or any JSON object) as a plain dict. The one definition of this alias.
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


class CustomizeResponse(_Model):
    relatedResources: list[RelatedResourceRule] = Field(default_factory=list,
                                                        description="rules selecting related objects")


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


# -- request decoding -----------------------------------------------------------------------
#: Deepest JSON nesting a hook request may have: the fixed limit of pydantic-core's parser, pinned
#: by a test. Kubernetes objects stay far below it (a Pod template is ~15 levels), and it keeps
#: whatever reads the value next (copying, merging, encoding the reply) far from Python's
#: recursion limit.
MAX_NESTING = 200


class RequestError(ValueError):
    """A hook request that does not follow the v2 protocol: `status` 400 (not JSON) or 422 (shape)."""

    def __init__(self, status: int, problems: list[str]):
        super().__init__("; ".join(problems))
        self.status = status
        self.problems = problems


def json_path(loc: Iterable[Any]) -> str:
    """`('children', 'Deployment.apps/v1', 'ns/a', 'metadata')` -> `children['Deployment.apps/v1']['ns/a'].metadata`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and (not part.isidentifier()):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _WireKept(BaseModel):
    """A decoded request that also keeps its wire form (`raw`), checked but untouched: objects pass
    through to replies and last-applied copies exactly as they arrived. (One wrap validator per
    request, not per object: per-object Python validators cost more than the rest of a sync.)"""
    _raw: Obj = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_wire_form(cls, data: Any, handler: Any) -> Any:
        obj = handler(data)
        if isinstance(data, dict):
            obj._raw = data
        return obj

    @property
    def raw(self) -> Obj:
        """The object exactly as it arrived (already checked by this model): for pass-through and last-applied."""
        return self._raw


class _Open(BaseModel):
    """A Kubernetes structure whose fields we read are typed; the others pass through untouched."""
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ObjectMeta(_Open):
    name: StrictStr = Field(min_length=1, max_length=253, description="object name")
    namespace: Optional[StrictStr] = Field(default=None, max_length=63, description="absent when cluster-scoped")
    uid: Optional[StrictStr] = Field(default=None, description="set by the API server")
    generation: Optional[StrictInt] = Field(default=None, ge=0, description="spec generation")
    labels: Optional[dict[StrictStr, StrictStr]] = Field(default=None, description="labels")
    annotations: Optional[dict[StrictStr, StrictStr]] = Field(default=None, description="annotations")
    deletionTimestamp: Optional[StrictStr] = Field(default=None, description="set once deletion started")


class Condition(_Open):
    type: StrictStr = Field(description="condition type, e.g. Ready")
    status: StrictStr = Field(description="True, False or Unknown")
    reason: Optional[StrictStr] = Field(default=None, description="CamelCase reason")
    message: Optional[StrictStr] = Field(default=None, description="human-readable detail")
    lastTransitionTime: Optional[StrictStr] = Field(default=None, description="RFC 3339 time")


class ObjectStatus(_Open):
    """The status fields of Kubernetes' conventions that controllers read (Deployments, Jobs, Nodes, claims)."""
    conditions: Optional[list[Condition]] = Field(default=None, description="status conditions")
    observedGeneration: Optional[StrictInt] = Field(default=None, description="generation the controller saw")
    replicas: Optional[StrictInt] = Field(default=None, description="Deployment replicas")
    readyReplicas: Optional[StrictInt] = Field(default=None, description="Deployment ready replicas")
    updatedReplicas: Optional[StrictInt] = Field(default=None, description="Deployment updated replicas")
    availableReplicas: Optional[StrictInt] = Field(default=None, description="Deployment available replicas")
    active: Optional[StrictInt] = Field(default=None, description="Job active pods")
    ready: Optional[StrictInt] = Field(default=None, description="Job ready pods")
    succeeded: Optional[StrictInt] = Field(default=None, description="Job succeeded pods")
    failed: Optional[StrictInt] = Field(default=None, description="Job failed pods")
    capacity: Optional[dict[StrictStr, StrictStr]] = Field(default=None, description="Node capacity")
    allocatable: Optional[dict[StrictStr, StrictStr]] = Field(default=None, description="Node allocatable")


class KubeObject(_Open):
    apiVersion: StrictStr = Field(min_length=1, description="e.g. apps/v1")
    kind: StrictStr = Field(min_length=1, description="e.g. Deployment")
    metadata: ObjectMeta = Field(description="object metadata")
    status: Optional[ObjectStatus] = Field(default=None, description="status, written by controllers")

    @property
    def key(self) -> str:
        """The v2 inner map key of this object."""
        ns = self.metadata.namespace
        return f"{ns}/{self.metadata.name}" if ns else self.metadata.name


#: `Kind.apiVersion` -> v2 object key -> object, as a typed request carries it.
TypedObjectMap = dict[StrictStr, dict[StrictStr, KubeObject]]


def _check_map(field: str, groups: TypedObjectMap) -> list[str]:
    problems = []
    for group, objects in groups.items():
        for key, obj in objects.items():
            path = json_path((field, group, key))
            if group_key(obj.apiVersion, obj.kind) != group:
                problems.append(f"{path}: a {obj.kind}.{obj.apiVersion} under group {group!r}")
            if obj.key != key:
                problems.append(f"{path}: key must be the object's v2 key {obj.key!r}")
            if field == "children":
                problems += _check_last_applied(path, obj)
    return problems


def _check_last_applied(path: str, obj: KubeObject) -> list[str]:
    """Metacontroller writes the desired child itself into this annotation; one that is not JSON, or
    names another object, would make "keep it as last applied" answer for the wrong child."""
    raw = (obj.metadata.annotations or {}).get(LAST_APPLIED)
    if raw is None:
        return []
    where = f"{path}.metadata.annotations[{LAST_APPLIED!r}]"
    try:
        applied = json.loads(raw)
    except (ValueError, RecursionError):
        applied = None
    if not isinstance(applied, dict):
        return [f"{where}: must hold a JSON object"]
    meta = applied.get("metadata") if isinstance(applied.get("metadata"), dict) else {}
    same = (applied.get("apiVersion"), applied.get("kind"), meta.get("name")) == \
        (obj.apiVersion, obj.kind, obj.metadata.name) and meta.get("namespace") in (None, obj.metadata.namespace)
    return [] if same else [f"{where}: describes another object"]


class _Request(_WireKept):
    # Metacontroller may add request fields in later versions: unknown keys are ignored.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CustomizeRequest(_Request):
    controller: Obj = Field(default_factory=dict, description="the whole CompositeController object")
    parent: KubeObject = Field(description="the parent object")


class SyncRequest(_Request):
    """Body of a sync or finalize call (`finalizing` tells them apart)."""
    controller: Obj = Field(default_factory=dict, description="the whole CompositeController object")
    parent: KubeObject = Field(description="the parent object")
    children: TypedObjectMap = Field(default_factory=dict, description="observed owned children, v2 keyed")
    related: TypedObjectMap = Field(description="objects selected by the customize reply; `{}` without one")
    finalizing: StrictBool = Field(default=False, description="true when called as the finalize hook")

    @model_validator(mode="after")
    def _keys_match_objects(self) -> "SyncRequest":
        problems = _check_map("children", self.children) + _check_map("related", self.related)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def pairs(self, field: str, group: str) -> list[tuple[KubeObject, Obj]]:
        """(typed, as-sent) for every object of one group of `children` or `related`, in key order."""
        typed, sent = getattr(self, field).get(group) or {}, (self.raw.get(field) or {}).get(group) or {}
        return [(typed[k], sent[k]) for k in sorted(typed)]


Request = TypeVar("Request", bound=BaseModel)


def parse_json(body: bytes) -> Any:
    """JSON bytes -> Python values, refusing what a hook must not pass on: invalid JSON or UTF-8,
    lone UTF-16 surrogates, NaN and Infinity, and nesting deeper than MAX_NESTING (pydantic-core's
    parser stops there by itself, before anything recursive reads the value). A literal beyond a
    double's range (`1e999`) still parses, as infinity: `encode_reply` refuses to send one on."""
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        text = str(exc)
        if "recursion limit" in text:
            text = f"JSON nests deeper than {MAX_NESTING} levels ({text})"
        raise RequestError(400, [f"request body is not valid JSON: {text}"]) from exc
    return data


def encode_reply(reply: Obj) -> bytes:
    """A hook reply as compact JSON. Our code makes no non-finite numbers, so one here came from the
    request (a literal beyond a double's range, passed through): that is the client's error."""
    try:
        return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise RequestError(422, [f"the request holds a number beyond JSON's range, which the reply would "
                                 f"carry: {exc}"]) from exc


def decode(model: type[Request], body: bytes) -> Request:
    """The one decoding step of a hook request: bytes -> `model`, or RequestError naming the path."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RequestError(422, [f"body: must be a JSON object, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, [_problem(e) for e in exc.errors(include_url=False)]) from exc


def _problem(err: Any) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    msg = err["msg"].removeprefix("Value error, ")
    return f"{json_path(loc) or 'body'}: {msg}"
