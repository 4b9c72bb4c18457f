"""Workspace status conditions (metav1.Condition shape), deterministic across identical syncs.

`lastTransitionTime` is copied from the observed status unless the condition's status changed,
so two syncs of the same world produce byte-identical status (no hot loop); "now" is an argument.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from metacontroller.api import Obj

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
#: Fixed output order, so the list never reorders between syncs.
ORDER = ("ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded", "WorkspaceReady")


@dataclass(frozen=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == TRUE


def render(conds: Iterable[Cond], observed: Iterable[Mapping[str, Any]] | None, now: str, generation: int) -> list[Obj]:
    before = {c.get("type"): c for c in observed or [] if isinstance(c, Mapping)}
    out = []
    for c in sorted(conds, key=lambda c: (ORDER.index(c.type) if c.type in ORDER else len(ORDER), c.type)):
        prev = before.get(c.type)
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == c.status else None
        out.append({"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
                    "lastTransitionTime": since or now, "observedGeneration": generation})
    return out


def combined(type_: str, parts: Iterable[Cond], ok_reason: str, ok_message: str) -> Cond:
    """True when every part is True, else False carrying the first non-True part's reason/message."""
    for p in parts:
        if not p.ok:
            return Cond(type_, FALSE, p.reason, p.message)
    return Cond(type_, TRUE, ok_reason, ok_message)
