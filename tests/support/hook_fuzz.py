"""Mutated Metacontroller requests for the two sync hooks, and the rule every reply must keep.

Shared by the property tests (`tests/unit/hooks/test_sync_properties.py`, driven by hypothesis)
and the reliability bench (`bench/hooks/fuzz.py`, driven by a seeded `random.Random` at a larger
budget against gunicorn). The base requests are real: an emulated cluster (the route table
in-process, Metacontroller's emulator, Karpenter and Deployment stand-ins) runs until every
Workspace is ready, and the last body each sync hook received is recorded.

The rule (issue 9, DESIGN.md §5): every reply is a non-200, or a 200 that keeps every observed
child unless the valid spec asks to drop it; a client's input never gets a 5xx.
- Workspace sync: a child may be missing from a 200 only when the Workspace's spec is valid and
  the same spec in the unmutated world does not want that child either.
- NodeProvisioner sync: a claim may be missing from a 200 only when the Workspace it belongs to
  (its labels) is gone, being deleted, or valid; an invalid Workspace keeps its claims.
"""
from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import yaml

from hooks.core import nodes as nodesel
from hooks.core import sync_workspace
from hooks.tools.emulated import inprocess_transport, make_world
from hooks.core.settings import CLAIM_APIS, Settings
from hooks.core.validation import validate_workspace

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_SYNC = "/workspace/sync"
NP_SYNC = "/nodeprovisioner/sync"
SETTINGS = Settings(claim_api=CLAIM_APIS["nodeclaim"])
T0 = "2026-01-01T00:00:00Z"
HUGE = 200_000
DEEP = 5_000
EXAMPLES = ("inference/kaito_workspace_phi_3.yaml", "inference/kaito_workspace_phi_3_with_adapters.yaml",
            "inference/kaito_workspace_falcon_40b_two_nodes.yaml", "tuning/kaito_workspace_tuning_phi_3.yaml")


# -- base requests ---------------------------------------------------------------------------
def base_requests() -> dict[str, dict[str, Any]]:
    """`path` -> {workspace name or "default": the last sync body that hook received} of a converged world."""
    clock = lambda: T0  # noqa: E731
    seen: dict[str, dict[str, Any]] = {WORKSPACE_SYNC: {}, NP_SYNC: {}}
    inner = inprocess_transport(SETTINGS, clock)

    def recording(url: str, body: dict, timeout: float) -> bytes:
        for path in seen:
            if url.endswith(path):
                seen[path][body["parent"]["metadata"]["name"]] = copy.deepcopy(body)
        return inner(url, body, timeout)

    world = make_world(SETTINGS, transport=recording, clock=clock, job_run_ticks=50)
    for i, rel in enumerate(EXAMPLES):
        ws = yaml.safe_load((ROOT / "examples" / rel).read_text())
        ws["metadata"].update(namespace="default", name=f"{ws['metadata']['name']}-{i}")
        world.cluster.create(ws)
    world.tick_seconds = None  # level-triggered: every parent syncs every round
    for _ in range(8):
        world.step()
    return seen


# -- choices ---------------------------------------------------------------------------------
class Chooser(Protocol):
    def pick(self, options: Sequence[Any]) -> Any: ...

    def integer(self, low: int, high: int) -> int: ...

    def text(self) -> str: ...


@dataclass
class RandomChooser:
    rnd: random.Random

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rnd.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.rnd.randint(low, high)

    def text(self) -> str:
        alphabet = "aZ09-/.é日本\u0000\u202e😀 \"\\\n"
        return "".join(self.rnd.choice(alphabet) for _ in range(self.rnd.randint(0, 12)))


# -- mutations -------------------------------------------------------------------------------
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into `value` (dict keys and list indexes), the root excluded."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def _replacement(kind: str, old: Any, choose: Chooser) -> Any:
    if kind == "null":
        return None
    if kind == "swap":
        return choose.pick([0, -1, 2 ** 70, 1.5, True, "", "broken", [], {}, [1, "x"], {"a": None}])
    if kind == "huge":
        return "x" * HUGE
    if kind == "unicode":
        return choose.text()
    if kind == "surrogate":
        return "a\udfff"
    if kind == "deep":
        return f"__DEEP_{choose.pick([60, 120, DEEP])}__"
    if kind == "number":
        return choose.pick(["8", "NaN", float("nan"), 1e308, -(2 ** 63), 3.0])
    return old


MUTATIONS = ("drop", "null", "swap", "huge", "unicode", "surrogate", "deep", "number", "duplicate", "foreign")
#: Where mutations land: anywhere, or in the parts that hooks read most.
FOCUS = ((), ("parent",), ("parent", "status"), ("children",), ("related",), ("parent", "metadata"))


def mutate(body: dict, choose: Chooser, max_mutations: int = 3) -> tuple[dict, list[str]]:
    """A mutated copy of `body` and a description of each mutation."""
    body = json.loads(json.dumps(body))  # a deep copy, several times faster than copy.deepcopy
    notes = []
    for _ in range(choose.integer(1, max_mutations)):
        kind = choose.pick(MUTATIONS)
        if kind in ("duplicate", "foreign"):
            notes.append(_child_mutation(body, kind, choose))
            continue
        focus = choose.pick(FOCUS)
        try:
            root = _get(body, focus)
        except (KeyError, IndexError, TypeError):
            root = body
            focus = ()
        paths = _paths(root, focus)
        if not paths:
            continue
        path = choose.pick(paths)
        try:
            holder = _get(body, path[:-1])
            old = holder[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        if kind == "drop":
            if isinstance(holder, dict):
                del holder[path[-1]]
            else:
                holder.pop(path[-1])
        else:
            holder[path[-1]] = _replacement(kind, old, choose)
        notes.append(f"{kind} {'/'.join(map(str, path))}")
    return body, notes


def _child_mutation(body: dict, kind: str, choose: Chooser) -> str:
    groups = body.get("children")
    if not isinstance(groups, dict):
        return f"{kind}: no children map"
    if kind == "foreign":
        name = choose.pick(["stray", "default/stray"])
        obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name.split("/")[-1]}}
        if "/" in name:
            obj["metadata"]["namespace"] = "default"
        groups.setdefault("Secret.v1", {})[name] = obj
        return f"foreign child Secret.v1/{name}"
    objects = [(g, k) for g, m in groups.items() if isinstance(m, dict) for k in m]
    if not objects:
        return "duplicate: no children"
    group, key = choose.pick(objects)
    twin = copy.deepcopy(groups[group][key])
    if isinstance(twin, dict) and isinstance(twin.get("metadata"), dict) and isinstance(twin["metadata"].get("name"), str):
        twin["metadata"]["name"] += "-twin"
        new_key = key + "-twin" if choose.pick([True, False]) else key + "-other"
    else:
        new_key = key + "-twin"
    groups[group][new_key] = twin
    return f"duplicate child {group}/{key} as {new_key}"


def encode(body: dict) -> bytes:
    """JSON bytes of a mutated body, with deep-nesting sentinels expanded (json.dumps could not)."""
    text = json.dumps(body)
    for depth in (60, 120, DEEP):
        text = text.replace(f'"__DEEP_{depth}__"', "[" * depth + "]" * depth)
    return text.encode()


# -- the rule --------------------------------------------------------------------------------
def _child_key(obj: Any, default_ns: Optional[str]) -> Optional[tuple]:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return None
    meta = obj["metadata"]
    return obj.get("apiVersion"), obj.get("kind"), meta.get("namespace") or default_ns, meta.get("name")


def _observed(body: dict, default_ns: Optional[str]) -> dict[tuple, dict]:
    out = {}
    for group in (body.get("children") or {}).values():
        for obj in (group or {}).values():
            key = _child_key(obj, default_ns)
            if key is not None:
                out[key] = obj
    return out


def _spec(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "status"}


def violation(path: str, base: dict, body: bytes, status: int, reply: bytes) -> Optional[str]:
    """Why this reply breaks the rule, or None. `base` is the unmutated request, `body` the mutated
    one as sent (only read on a 200, so it decoded)."""
    if status >= 500:
        return f"{status} for client input: {reply[:300]!r}"
    if status != 200:
        return None
    sent, answer = json.loads(body), json.loads(reply)
    if path == WORKSPACE_SYNC:
        return _workspace_violation(base, sent, answer)
    return _nodeprovisioner_violation(sent, answer)


def _workspace_violation(base: dict, sent: dict, answer: dict) -> Optional[str]:
    parent = sent["parent"]
    ns = parent["metadata"].get("namespace")
    kept = {_child_key(c, ns) for c in answer.get("children") or []}
    dropped = [k for k in _observed(sent, ns) if k not in kept]
    if not dropped:
        return None
    errors = validate_workspace(_spec(parent)).errors
    if errors:
        return f"invalid spec ({errors[0]}) but dropped {dropped}"
    clean = copy.deepcopy(base)
    clean["parent"] = {**copy.deepcopy(_spec(parent)), **({"status": base["parent"]["status"]}
                                                           if "status" in base["parent"] else {})}
    wanted = {_child_key(c, ns) for c in sync_workspace.sync(clean, SETTINGS, T0)["children"]}
    wrongly = [k for k in dropped if k in wanted]
    return f"dropped {wrongly}, which the same spec keeps in the unmutated world" if wrongly else None


def _nodeprovisioner_violation(sent: dict, answer: dict) -> Optional[str]:
    kept = {(c.get("metadata") or {}).get("name") for c in answer.get("children") or []}
    workspaces = {(w["metadata"].get("namespace"), w["metadata"]["name"]): w
                  for w in sent["related"]["Workspace.kaito.sh/v1alpha1"].values()}
    problems = []
    for obj in _observed(sent, None).values():
        name = obj["metadata"]["name"]
        if name in kept:
            continue
        labels = obj["metadata"].get("labels") or {}
        owner = workspaces.get((labels.get(nodesel.WS_NS_LABEL), labels.get(nodesel.WS_LABEL)))
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            continue
        errors = validate_workspace(_spec(owner)).errors
        if errors:
            problems.append(f"claim {name} of invalid Workspace {owner['metadata']['name']} ({errors[0]})")
    return "dropped " + "; ".join(problems) if problems else None


# -- one run ---------------------------------------------------------------------------------
Poster = Callable[[str, bytes], tuple[int, bytes]]


def one_case(path: str, base: dict, choose: Chooser, post: Poster) -> tuple[int, Optional[str], list[str]]:
    """Mutate `base`, post it, judge the reply: (status, violation or None, mutation notes)."""
    sent, notes = mutate(base, choose)
    body = encode(sent)
    status, reply = post(path, body)
    return status, violation(path, base, body, status, reply), notes
