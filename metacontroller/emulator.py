"""Plays Metacontroller's CompositeController against a hook server over real HTTP.

One `CompositeControllerEmulator` per CompositeController object (e.g. the one from deploy/).
`reconcile(parent)` does what `pkg/controller/composite/controller.go` does for one parent:
customize (cached per parent UID and generation) -> select related -> sync (or finalize) ->
manage children per update strategy -> replace status with `observedGeneration` injected.
Any hook failure (non-200, timeout, connection error, bad JSON, unknown reply keys) changes
nothing and is recorded as a `SyncError` event, like the real controller.
"""
from __future__ import annotations

import copy
import email.utils
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Optional

from pydantic import ValidationError

from .api import CustomizeResponse, Obj, SyncResponse, build_object_map
from .apply import apply_update, with_last_applied
from .cluster import Cluster, ResourceType
from .errors import ApplyError, HookCallError, MetacontrollerError, ProtocolError, TooManyRequests
from .selectors import label_selector_matches

Transport = Callable[[str, Obj, float], bytes]
UPDATE_METHODS = ("OnDelete", "Recreate", "InPlace", "RollingRecreate", "RollingInPlace")


def _retry_after(raw: Optional[str]) -> float:
    """`Retry-After` in seconds or as an HTTP date; 0 when absent or unreadable."""
    if not raw:
        return 0.0
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        return max((email.utils.parsedate_to_datetime(raw).timestamp() - time.time()), 0.0)
    except (TypeError, ValueError):
        return 0.0


@dataclass
class SyncOutcome:
    """What one reconcile of one parent did."""
    ok: bool
    error: Optional[str] = None
    retry_after: Optional[float] = None  # set when the hook answered 429
    reply: Optional[bytes] = None
    resync_after: float = 0.0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@dataclass
class Event:
    parent: str
    reason: str
    message: str


def _ref(obj: Obj) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{obj['kind']}/{ns + '/' if ns else ''}{meta['name']}"


class CompositeControllerEmulator:
    def __init__(self, cluster: Cluster, controller: Obj, *, base_url: Optional[str] = None,
                 timeout: float = 10.0, transport: Optional[Transport] = None) -> None:
        """`base_url` (e.g. `http://127.0.0.1:8080`) replaces the scheme/host/port of every hook URL.

        `transport(url, body, timeout) -> reply bytes` replaces HTTP (in-process simulations); it
        raises HookCallError for what would be a non-200 answer.
        """
        self.transport = transport
        self.cluster = cluster
        self.controller = copy.deepcopy(controller)
        self.controller.setdefault("status", {})
        self.spec = self.controller["spec"]
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout
        self.events: list[Event] = []
        self.hook_calls: dict[str, int] = {}
        self._customize_cache: dict[tuple[str, int], CustomizeResponse] = {}
        self._seen: dict[str, tuple] = {}
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        pr = self.spec["parentResource"]
        self.parent_type = cluster.type_for_resource(pr["apiVersion"], pr["resource"])
        self.child_rules: list[tuple[ResourceType, str]] = []
        for rule in self.spec.get("childResources") or []:
            method = (rule.get("updateStrategy") or {}).get("method") or "OnDelete"
            if method not in UPDATE_METHODS:
                raise ApplyError(f"updateStrategy.method {method!r}; accepted: {', '.join(UPDATE_METHODS)}")
            self.child_rules.append((cluster.type_for_resource(rule["apiVersion"], rule["resource"]), method))

    # -- hook transport ----------------------------------------------------------------
    def _url(self, hook: Obj) -> str:
        webhook = hook["webhook"]
        if webhook.get("url"):
            url = webhook["url"]
        else:
            svc = webhook["service"]
            url = (f"{svc.get('protocol', 'http')}://{svc['name']}.{svc['namespace']}:{svc.get('port', 80)}"
                   f"{webhook.get('path', '')}")
        if self.base_url:
            parts = urllib.parse.urlsplit(url)
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return url

    def _timeout(self, hook: Obj) -> float:
        """Go duration (`10s`, `500ms`, `1m`); absent or <= 0 falls back to 10 s like `webhookTimeout`."""
        raw = hook["webhook"].get("timeout")
        if not raw:
            return self.timeout
        match = re.fullmatch(r"([0-9.]+)(ms|s|m)", str(raw).strip())
        if not match:
            raise ProtocolError(f"webhook.timeout {raw!r} is not a Go duration like 10s or 500ms")
        value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]
        return value if value > 0 else 10.0

    def call_hook(self, name: str, body: Obj) -> bytes:
        """POST `body` to hook `name`; returns the raw 200 body or raises HookCallError."""
        hook = self.spec["hooks"][name]
        if hook.get("version", "v1") != "v2":
            raise ProtocolError(f"hook {name} uses version {hook.get('version', 'v1')}; the emulator speaks v2")
        url = self._url(hook)
        self.hook_calls[name] = self.hook_calls.get(name, 0) + 1
        if self.transport is not None:
            return self.transport(url, body, self._timeout(hook))
        data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout(hook)) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise TooManyRequests(f"{name} hook answered 429", _retry_after(exc.headers.get("Retry-After"))) from exc
            raise HookCallError(f"unsupported status code: {exc.code} body: {exc.read()[:500]!r}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise HookCallError(f"{name} hook call to {url} failed: {exc}") from exc
        if status != 200:
            raise HookCallError(f"unsupported status code: {status} body: {payload[:500]!r}")
        return payload

    # -- selection -----------------------------------------------------------------------
    def parents(self) -> list[Obj]:
        sel = self.spec["parentResource"].get("labelSelector")
        objs = self.cluster.list(self.parent_type.api_version, self.parent_type.kind)
        return [o for o in objs if sel is None or label_selector_matches(sel, o["metadata"].get("labels"))]

    def _selector_matches(self, parent: Obj, obj: Obj) -> bool:
        if self.spec.get("generateSelector"):
            return (obj["metadata"].get("labels") or {}).get("controller-uid") == parent["metadata"]["uid"]
        sel = (parent.get("spec") or {}).get("selector")
        return bool(sel) and label_selector_matches(sel, obj["metadata"].get("labels"))

    def observed_children(self, parent: Obj) -> list[Obj]:
        uid = parent["metadata"]["uid"]
        out = []
        for rtype, _ in self.child_rules:
            ns = parent["metadata"].get("namespace") if rtype.namespaced and self.parent_type.namespaced else None
            for obj in self.cluster.list(rtype.api_version, rtype.kind, namespace=ns):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid and r.get("controller") for r in refs) and \
                        self._selector_matches(parent, obj):
                    out.append(obj)
        return out

    def _related(self, parent: Obj, rules: CustomizeResponse) -> tuple[list[tuple[str, str]], list[Obj]]:
        groups, objs = [], []
        for rule in rules.relatedResources:
            rtype = self.cluster.type_for_resource(rule.apiVersion, rule.resource)
            groups.append((rtype.api_version, rtype.kind))
            ns_names = None
            if rule.namespace is None and rule.namespaceSelector is not None and rule.names is None:
                sel = rule.namespaceSelector.model_dump(exclude_none=True)
                ns_names = {n["metadata"]["name"] for n in self.cluster.list("v1", "Namespace")
                            if label_selector_matches(sel, n["metadata"].get("labels"))}
            label_sel = rule.labelSelector.model_dump(exclude_none=True) if rule.labelSelector else None
            for obj in self.cluster.list(rtype.api_version, rtype.kind, namespace=rule.namespace):
                meta = obj["metadata"]
                if rule.names is not None:
                    if meta["name"] not in rule.names:
                        continue
                else:
                    if ns_names is not None and meta.get("namespace") not in ns_names:
                        continue
                    if label_sel is not None and not label_selector_matches(label_sel, meta.get("labels")):
                        continue
                if obj["metadata"].get("uid") == parent["metadata"].get("uid"):
                    continue
                objs.append(obj)
        return groups, objs

    # -- reconcile -----------------------------------------------------------------------
    def reconcile_all(self, now: Optional[float] = None) -> dict[str, SyncOutcome]:
        """Sync every parent (now=None), or, on a virtual clock, only those Metacontroller would sync.

        With `now` (seconds), a parent is synced when it, one of its children or one of its related
        objects changed since its last sync (informer events, including the controller's own status
        writes, as in the real one), when its `resyncAfterSeconds` elapsed, when
        `resyncPeriodSeconds` elapsed, or when a failed sync's backoff (5 ms doubling) is over.
        """
        out = {}
        for parent in self.parents():
            uid = parent["metadata"]["uid"]
            if now is not None:
                state = self._fingerprint(parent)
                if state == self._seen.get(uid) and now < self._due.get(uid, 0.0):
                    continue
                self._seen[uid] = state
            outcome = self.reconcile(parent)
            out[_ref(parent)] = outcome
            if now is not None:
                if outcome.ok:
                    self._failures.pop(uid, None)
                    period = float(self.spec.get("resyncPeriodSeconds") or 0) or float("inf")
                    self._due[uid] = now + (outcome.resync_after if outcome.resync_after > 0 else period)
                elif outcome.retry_after is not None:
                    self._due[uid] = now + outcome.retry_after
                else:
                    n = self._failures[uid] = self._failures.get(uid, 0) + 1
                    self._due[uid] = now + min(0.005 * 2 ** (n - 1), 1000.0)
        return out

    def _fingerprint(self, parent: Obj) -> tuple:
        """resourceVersions of the parent, its children and its related objects."""
        rvs = [parent["metadata"].get("resourceVersion")]
        rvs += sorted(o["metadata"]["resourceVersion"] for o in self.observed_children(parent))
        rules = self._customize_cache.get((parent["metadata"]["uid"], parent["metadata"].get("generation", 0)))
        if rules is not None:
            rvs += sorted(o["metadata"]["resourceVersion"] for o in self._related(parent, rules)[1])
        return tuple(rvs)

    def reconcile(self, parent: Obj) -> SyncOutcome:
        parent = self.cluster.get(parent["apiVersion"], parent["kind"], parent["metadata"]["name"],
                                  parent["metadata"].get("namespace", "")) or parent
        hooks = self.spec.get("hooks") or {}
        finalizer = f"metacontroller.io/compositecontroller-{self.controller['metadata']['name']}"
        deleting = bool(parent["metadata"].get("deletionTimestamp"))
        if deleting and "finalize" not in hooks:
            return SyncOutcome(ok=True)  # left to the garbage collector
        if "finalize" in hooks and not deleting and finalizer not in (parent["metadata"].get("finalizers") or []):
            parent["metadata"].setdefault("finalizers", []).append(finalizer)
            parent = self.cluster.update(parent)
        try:
            related_groups, related = [], []
            if "customize" in hooks:
                cache_key = (parent["metadata"]["uid"], parent["metadata"].get("generation", 0))
                rules = self._customize_cache.get(cache_key)
                if rules is None:
                    raw = self.call_hook("customize", {"controller": self.controller, "parent": parent})
                    rules = self._parse(raw, CustomizeResponse)
                    self._customize_cache[cache_key] = rules
                related_groups, related = self._related(parent, rules)
            observed = self.observed_children(parent)
            body = {
                "controller": self.controller,
                "parent": parent,
                "children": build_object_map(((t.api_version, t.kind) for t, _ in self.child_rules), observed),
                "related": build_object_map(related_groups, related),
                "finalizing": deleting,
            }
            raw = self.call_hook("finalize" if deleting else "sync", body)
            reply = self._parse(raw, SyncResponse)
        except MetacontrollerError as exc:
            self.events.append(Event(_ref(parent), "SyncError", f"Sync error: {exc}"))
            return SyncOutcome(ok=False, error=str(exc),
                               retry_after=exc.retry_after if isinstance(exc, TooManyRequests) else None)
        outcome = SyncOutcome(ok=True, reply=raw, resync_after=max(reply.resyncAfterSeconds, 0.0))
        try:
            self._manage_children(parent, observed, [c for c in reply.children if c is not None], outcome)
        except ApplyError as exc:
            outcome.ok, outcome.error = False, str(exc)
            self.events.append(Event(_ref(parent), "SyncError", f"Sync error: {exc}"))
        status = dict(reply.status or {})
        status["observedGeneration"] = parent["metadata"].get("generation", 0)
        if self.cluster.get(parent["apiVersion"], parent["kind"], parent["metadata"]["name"],
                            parent["metadata"].get("namespace", "")) is not None:
            self.cluster.update_status(parent, status)
        if deleting and reply.finalized:
            current = self.cluster.get(parent["apiVersion"], parent["kind"], parent["metadata"]["name"],
                                       parent["metadata"].get("namespace", ""))
            if current is not None:
                current["metadata"]["finalizers"] = [f for f in current["metadata"].get("finalizers", [])
                                                     if f != finalizer]
                self.cluster.update(current)
        return outcome

    @staticmethod
    def _parse(raw: bytes, model):
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise ProtocolError(f"cannot decode hook reply as {model.__name__} (strict v2): {exc}") from exc

    def _owner_ref(self, parent: Obj) -> Obj:
        return {"apiVersion": parent["apiVersion"], "kind": parent["kind"], "name": parent["metadata"]["name"],
                "uid": parent["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _manage_children(self, parent: Obj, observed: list[Obj], desired: list[Obj], outcome: SyncOutcome) -> None:
        rules = {(t.api_version, t.kind): (t, m) for t, m in self.child_rules}
        parent_ns = parent["metadata"].get("namespace")
        wanted: dict[tuple, Obj] = {}
        for child in desired:
            child = copy.deepcopy(child)
            try:
                rtype, _ = rules[(child["apiVersion"], child["kind"])]
                name = child["metadata"]["name"]
            except KeyError as exc:
                raise ApplyError(f"desired child {child.get('kind')}.{child.get('apiVersion')} "
                                 f"is not a child resource of this controller") from exc
            meta = child["metadata"]
            if rtype.namespaced:
                if self.parent_type.namespaced:
                    meta.setdefault("namespace", parent_ns)
                    if meta["namespace"] != parent_ns:
                        raise ApplyError(f"child {_ref(child)} is outside the parent's namespace {parent_ns}")
                elif not meta.get("namespace"):
                    raise ApplyError(f"namespaced child {child['kind']} {name} of a cluster-scoped parent "
                                     f"needs a namespace")
            elif self.parent_type.namespaced:
                raise ApplyError(f"a namespaced parent cannot own cluster-scoped {_ref(child)}")
            if self.spec.get("generateSelector"):
                meta.setdefault("labels", {})["controller-uid"] = parent["metadata"]["uid"]
            elif not self._selector_matches(parent, child):
                raise ApplyError(f"labels on desired child {_ref(child)} don't match parent selector")
            key = (child["apiVersion"], child["kind"], meta.get("namespace", ""), name)
            if key in wanted:
                raise ApplyError(f"duplicate desired child {_ref(child)}")
            wanted[key] = child
        seen = {(o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                for o in observed}
        rolled: set[tuple[str, str]] = set()
        for key, child in wanted.items():
            rtype, method = rules[(key[0], key[1])]
            current = seen.get(key)
            if current is None:
                if self.cluster.get(key[0], key[1], key[3], key[2]) is not None:
                    continue  # exists but not ours (or being replaced): AlreadyExists is swallowed
                obj = with_last_applied(child)  # what the hook asked for, without what MC adds
                obj["metadata"]["ownerReferences"] = [self._owner_ref(parent)]
                self.cluster.create(obj)
                outcome.created.append(_ref(child))
                continue
            if method == "OnDelete" or current["metadata"].get("deletionTimestamp"):
                continue
            merged = apply_update(current, child)
            if merged == current:
                continue
            if method.startswith("Rolling"):
                if (key[0], key[1]) in rolled:
                    continue  # one child per rule per sync; statusChecks are not emulated
                rolled.add((key[0], key[1]))
            if method in ("Recreate", "RollingRecreate"):
                self.cluster.delete(key[0], key[1], key[3], key[2])
                outcome.deleted.append(_ref(current))
            else:
                self.cluster.update(merged)
                outcome.updated.append(_ref(current))
        for key, obj in seen.items():
            if key not in wanted and not obj["metadata"].get("deletionTimestamp"):
                self.cluster.delete(key[0], key[1], key[3], key[2])
                outcome.deleted.append(_ref(obj))
