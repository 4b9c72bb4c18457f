"""A whole emulated cluster: API store, CompositeControllers talking HTTP to hooks, and stand-ins.

`World.step()` is one round of `tick_seconds` virtual seconds: every stand-in ticks, then every
controller syncs the parents Metacontroller would sync now (something changed, `resyncAfterSeconds`
or `resyncPeriodSeconds` elapsed, backoff over). `run_until` loops rounds until a predicate holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .api import Obj
from .cluster import Cluster
from .emulator import CompositeControllerEmulator, SyncOutcome
from .errors import MetacontrollerError


@dataclass
class World:
    cluster: Cluster
    controllers: list[CompositeControllerEmulator] = field(default_factory=list)
    standins: list[Any] = field(default_factory=list)
    rounds: int = 0
    last: dict[str, SyncOutcome] = field(default_factory=dict)
    #: virtual seconds per round; None syncs every parent every round (level-triggered)
    tick_seconds: Optional[float] = 5.0
    now: float = 0.0

    def step(self) -> dict[str, SyncOutcome]:
        for s in self.standins:
            s.tick()
        out: dict[str, SyncOutcome] = {}
        for ctl in self.controllers:
            out.update(ctl.reconcile_all(None if self.tick_seconds is None else self.now))
        self.rounds += 1
        if self.tick_seconds is not None:
            self.now += self.tick_seconds
        self.last = out
        return out

    def run_until(self, predicate: Callable[[], bool], max_rounds: int = 20) -> int:
        """Run rounds until `predicate()` holds; returns the rounds taken or raises with the last errors."""
        for i in range(max_rounds):
            if predicate():
                return i
            self.step()
        if predicate():
            return max_rounds
        errors = {k: v.error for k, v in self.last.items() if v.error}
        raise MetacontrollerError(f"world did not converge in {max_rounds} rounds; last errors: {errors}")

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Optional[Obj]:
        return self.cluster.get(api_version, kind, name, namespace)
