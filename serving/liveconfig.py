"""Which parts of a Serve config change live and which need new replicas (pure; no Ray).

Ray Serve keeps a deployment's replicas when a redeployed config differs only in lightweight
options, `user_config` among them, and calls each live replica's `reconfigure(user_config)`; a
change to the application's builder `args` or import path rebuilds the application and replaces
every replica (docs/serving.md, "Live adapters"). So the hot keys of the application args travel in
the deployment's `user_config`, and everything else stays in `args`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from contract.serveargs import LIVE_FIELDS

#: ServeArgs keys a running replica applies through reconfigure(); any other key needs new replicas.
HOT_KEYS = tuple(sorted(LIVE_FIELDS))


def split_args(args: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(builder args without the hot keys, the hot keys as a user_config). `adapters` is always in
    the user_config, so Serve always calls reconfigure() on a new replica."""
    args = dict(args or {})
    hot = {k: args.pop(k) for k in HOT_KEYS if k in args}
    hot.setdefault("adapters", [])
    return args, hot


def declarative(config: dict[str, Any], deployment: str) -> dict[str, Any]:
    """The Serve config as deployed: per application, the builder args less the hot keys, and the hot
    keys as `user_config` of the application's `deployment`. The result validates as Ray Serve's
    ServeDeploySchema."""
    out = copy.deepcopy(config)
    for app in out.get("applications") or []:
        static, hot = split_args(app.get("args"))
        app["args"] = static
        overrides = [d for d in app.get("deployments") or [] if d.get("name") != deployment]
        mine = next((d for d in app.get("deployments") or [] if d.get("name") == deployment), {})
        app["deployments"] = [*overrides, {**mine, "name": deployment, "user_config": hot}]
    return out


@dataclass(frozen=True)
class ReloadPlan:
    """What a changed Serve config file means for the running applications."""

    live: bool                                            # apply now, through user_config
    restart_changes: list[str] = field(default_factory=list)  # what needs new replicas (not applied)
    hot_changes: list[str] = field(default_factory=list)     # what changes live

    def describe(self) -> str:
        if self.restart_changes:
            return ("not applied live: " + ", ".join(self.restart_changes) + " need new replicas "
                    "(in a cluster, the pod restarts when its template changes); the live keys of this "
                    "version are not applied either, so the served set stays as it was")
        if self.hot_changes:
            return "applying live: " + ", ".join(self.hot_changes)
        return "no change"


def plan_reload(old: dict[str, Any], new: dict[str, Any]) -> ReloadPlan:
    """Compare two Serve configs (as read from the file). A change outside the hot keys of the
    applications' args is never applied live: it is named in `restart_changes`."""
    old_apps, new_apps = _apps(old), _apps(new)
    restart: list[str] = []
    hot: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key != "applications" and old.get(key) != new.get(key):
            restart.append(key)
    for name in sorted(set(old_apps) | set(new_apps)):
        if name not in old_apps or name not in new_apps:
            restart.append(f"applications[{name}] (added or removed)")
            continue
        a, b = old_apps[name], new_apps[name]
        for key in sorted((set(a) | set(b)) - {"args"}):
            if a.get(key) != b.get(key):
                restart.append(f"applications[{name}].{key}")
        (sa, ha), (sb, hb) = split_args(a.get("args")), split_args(b.get("args"))
        restart += [f"applications[{name}].args.{k}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
        hot += [f"applications[{name}].args.{k}" for k in sorted(set(ha) | set(hb)) if ha.get(k) != hb.get(k)]
    return ReloadPlan(live=not restart and bool(hot), restart_changes=restart, hot_changes=hot)


def _apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a.get("name", "default"): a for a in config.get("applications") or []}
