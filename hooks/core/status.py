"""Workspace status conditions (metav1.Condition shape), deterministic across identical syncs.

`lastTransitionTime` is copied from the observed status unless the condition's status changed,
so two syncs of the same world produce byte-identical status (no hot loop); "now" is an argument.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from contract.podstatus import ADAPTER_UNAVAILABLE, ADAPTERS_AVAILABLE, pod_condition
from metacontroller.api import Obj

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
#: Fixed output order, so the list never reorders between syncs.
ORDER = ("ResourceReady", "InferenceReady", "AdaptersReady", "JobStarted", "WorkspaceSucceeded", "WorkspaceReady")


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


# -- pod-level facts -------------------------------------------------------------------------------
#: Stable condition reasons for what the kubelet and scheduler report about a workspace's pods
#: (docs/control-plane.md lists them). Whatever the kubelet's own waiting reason, one cause has one reason.
POD_UNSCHEDULABLE = "PodUnschedulable"
IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_CONFIG_FAILED = "ContainerConfigFailed"
CONTAINER_CRASH_LOOPING = "ContainerCrashLooping"
CONTAINER_OOM_KILLED = "ContainerOOMKilled"
INIT_CONTAINER_FAILED = "InitContainerFailed"
CONTAINER_FAILED = "ContainerFailed"
POD_FAILED = "PodFailed"
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
#: Longest cause quoted from a termination message (the kubelet keeps up to 4096 bytes).
MESSAGE_CHARS = 400


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "..." when longer (a condition message stays readable)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def last_line(text: str | None) -> str:
    """The last non-empty line: our containers end with one clear line, and with
    FallbackToLogsOnError the message is the tail of the log."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return clip(line, MESSAGE_CHARS)


def _terminated_text(term: Mapping[str, Any]) -> str:
    reason = term.get("reason") or "Error"
    text = f"{reason} (exit code {term.get('exitCode', '?')})"
    cause = last_line(term.get("message"))
    return f"{text}: {cause}" if cause else text


def _container_problem(pod: str, cs: Mapping[str, Any], init: bool, restart_never: bool) -> Cond | None:
    kind = "init container" if init else "container"
    who = f"pod {pod} {kind} {cs.get('name', '?')}"
    state = cs.get("state") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    wreason = waiting.get("reason") or ""
    if wreason in _PULL_REASONS:
        detail = last_line(waiting.get("message"))
        return Cond("", FALSE, IMAGE_PULL_FAILED,
                    f"{who} cannot pull image {cs.get('image', '?')} ({wreason})" + (f": {detail}" if detail else ""))
    if wreason in _CONFIG_REASONS:
        return Cond("", FALSE, CONTAINER_CONFIG_FAILED, f"{who} cannot start ({wreason}): {last_line(waiting.get('message'))}")
    if init and (last or terminated) and int((terminated or last).get("exitCode") or 0) != 0:
        return Cond("", FALSE, INIT_CONTAINER_FAILED, f"{who} failed: {_terminated_text(terminated or last)}")
    if wreason == "CrashLoopBackOff":
        oom = last.get("reason") == "OOMKilled"
        what = _terminated_text(last) if last else "no termination recorded"
        return Cond("", FALSE, CONTAINER_OOM_KILLED if oom else CONTAINER_CRASH_LOOPING,
                    f"{who} is crash-looping (CrashLoopBackOff), last terminated: {what}")
    if terminated and int(terminated.get("exitCode") or 0) != 0 and (restart_never or terminated.get("reason") == "OOMKilled"):
        oom = terminated.get("reason") == "OOMKilled"
        return Cond("", FALSE, CONTAINER_OOM_KILLED if oom else CONTAINER_FAILED,
                    f"{who} failed: {_terminated_text(terminated)}")
    return None


def pod_problem(pods: Iterable[Mapping[str, Any]], type_: str) -> Cond | None:
    """The first thing that keeps a workspace's pods from running, as a False `type_` condition.

    Pods are read in name order and a pod's init containers before its containers, so the same
    world always yields the same condition. Pods being deleted are skipped (a rollout's old pods).
    """
    for p in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        meta, spec, st = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
        if meta.get("deletionTimestamp") or st.get("phase") == "Succeeded":
            continue
        name = meta.get("name", "?")
        for c in st.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == FALSE:
                why = c.get("reason") or "Unschedulable"
                return Cond(type_, FALSE, POD_UNSCHEDULABLE,
                            f"pod {name} cannot be scheduled ({why}): {last_line(c.get('message'))}")
        never = spec.get("restartPolicy") == "Never"
        statuses = [(cs, True) for cs in st.get("initContainerStatuses") or []] + \
                   [(cs, False) for cs in st.get("containerStatuses") or []]
        for cs, init in statuses:
            found = _container_problem(name, cs, init, never)
            if found is not None:
                return Cond(type_, FALSE, found.reason, found.message)
        if st.get("phase") == "Failed":
            return Cond(type_, FALSE, POD_FAILED,
                        f"pod {name} failed ({st.get('reason') or 'Failed'}): {last_line(st.get('message'))}")
    return None


# -- adapters, as the serving runtime reports them on its pods ---------------------------------------
ADAPTERS_READY = "AdaptersReady"
ADAPTERS_PENDING = "AdapterStatusUnknown"
#: Longest AdaptersReady message (each pod's own message is bounded by the runtime too).
ADAPTERS_MESSAGE_CHARS = 1500


def adapters_condition(pods: Iterable[Mapping[str, Any]]) -> Cond:
    """AdaptersReady from the pods' `kaito.sh/AdaptersAvailable` conditions (contract/podstatus.py),
    which each serving runtime patches on its own pod: False while any pod serves an older set because
    an adapter could not be fetched or loaded (the message names the pods, the adapters and why), True
    once every reporting pod says so, Unknown while none has reported. Pods with the same message are
    named together, in name order, so the same world always yields the same condition."""
    failing: dict[str, list[str]] = {}
    reported = False
    for p in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        meta = p.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        c = pod_condition(p)
        if c is None:
            continue
        reported = True
        if c.get("status") == FALSE:
            failing.setdefault(c.get("message") or c.get("reason") or "an adapter is unavailable", []).append(
                meta.get("name", "?"))
    if failing:
        parts = [f"pod{'s' if len(names) > 1 else ''} {', '.join(names)}: {message}"
                 for message, names in sorted(failing.items(), key=lambda kv: kv[1])]
        return Cond(ADAPTERS_READY, FALSE, ADAPTER_UNAVAILABLE, clip("; ".join(parts), ADAPTERS_MESSAGE_CHARS))
    if reported:
        return Cond(ADAPTERS_READY, TRUE, ADAPTERS_AVAILABLE, "every adapter is available on every serving pod")
    return Cond(ADAPTERS_READY, UNKNOWN, ADAPTERS_PENDING, "no serving pod has reported its adapters yet")
