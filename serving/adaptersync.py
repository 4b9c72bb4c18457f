"""A replica's adapter set kept equal to its latest user_config, and adapter tags kept on their newest digest.

Ray Serve calls the deployment's `reconfigure(user_config)` on every live replica when the hot keys
of the Serve config change (serving/liveconfig.py). `AdapterSync.submit` takes that config and
returns at once: Serve does not route requests to a replica while its reconfigure() runs, so the
fetch and the swap happen afterwards, on the replica's event loop, one round at a time, latest wins.

An adapter given by tag (`oci://REGISTRY/REPO:TAG`) is resolved to its manifest digest and served
pinned as `REPO:TAG@sha256:...`; it is resolved again every `adapter_resolve_interval_s`, at once when
`adapter_refresh` changes, and on every change of the adapter set. The interval is live too: a change of
it alone resolves nothing at once, it moves the next resolution to the last one plus the new interval.
A new digest under the tag is a changed source, which `Service.apply_adapters` swaps between engine
steps. A tag that cannot be resolved keeps its last digest serving; the failure is logged, counted and
listed in `problems` (a tag never resolved is passed on unpinned, so the fetch itself fails and
/v1/models marks that adapter unavailable).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .config import ConfigError, parse_args

log = logging.getLogger(__name__)

Resolver = Callable[[str], str]  # a tag source -> its manifest digest now; raises on failure


def default_resolver(source: str) -> str:
    import artifacts

    return artifacts.resolve_digest(source)


def tag_of(source: str) -> str | None:
    """The source itself when it names an OCI tag without a digest (the only kind re-resolved), else None.
    A local directory or an hf:// revision is taken as given."""
    import artifacts

    try:
        ref = artifacts.parse_source(source)
    except artifacts.InvalidReference:
        return None  # the fetch reports a bad reference, with the adapter's name
    return source if isinstance(ref, artifacts.OciReference) and not ref.digest else None


def pinned(source: str, digest: str) -> str:
    return f"{source}@{digest}"


@dataclass(frozen=True)
class HotArgs:
    """The live part of ServeArgs (serving/liveconfig.py HOT_KEYS), validated against the full model."""

    adapters: tuple[Any, ...]  # AdapterArg, as given (sources unpinned)
    resolve_interval_s: float
    refresh: str | None

    @classmethod
    def parse(cls, static: dict[str, Any], hot: dict[str, Any]) -> "HotArgs":
        args = parse_args({**static, **hot})
        return cls(tuple(args.adapters), float(args.adapter_resolve_interval_s), args.adapter_refresh)


class AdapterSync:
    """`apply` is `Service.apply_adapters`; `ready` says whether the engine can take adapters now.
    `on_resolve_failure(name, reason)` is called for every failed resolution (a metric);
    `on_problem(name, problem, previous)` after each round for every problem that appeared
    (`problem` set) or went away (`problem` None, `previous` the one it takes back): /v1/models."""

    def __init__(self, static: dict[str, Any], apply: Callable[[list[Any]], Awaitable[Any]], *,
                 ready: Callable[[], bool], resolve: Resolver = default_resolver,
                 on_resolve_failure: Callable[[str, str], None] | None = None,
                 on_problem: Callable[[str, str | None, str | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._static = dict(static)
        self._apply = apply
        self._ready = ready
        self._resolve = resolve
        self._on_failure = on_resolve_failure
        self._on_problem = on_problem
        self._reported: dict[str, str] = {}  # problems as last handed to on_problem
        self._clock = clock
        self._desired: HotArgs | None = None
        self._resolve_now = False
        self._digests: dict[str, str] = {}   # tag source -> digest being served
        self.applied: list[Any] | None = None  # the specs last handed to apply
        self.problems: dict[str, str] = {}    # adapter name -> why its tag could not be resolved
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._next_resolve = float("inf")
        self._resolved_at: float | None = None  # when tags were last resolved (the period counts from it)

    # ---- input ------------------------------------------------------------------------------
    def submit(self, hot: dict[str, Any]) -> bool:
        """Take a new user_config; False (logged, nothing changes) when it does not validate."""
        try:
            new = HotArgs.parse(self._static, hot)
        except ConfigError as e:
            log.error("adapter config not applied, the served set stays as it was: %s", e.message)
            return False
        old = self._desired
        self._desired = new
        if old is None or (old.adapters, old.refresh) != (new.adapters, new.refresh):
            self._resolve_now = True  # a new set or a refresh bump: look at the tags again now
        elif old.resolve_interval_s != new.resolve_interval_s:
            self._schedule()  # a new period, counted from the last resolution
        self._wake()
        return True

    async def initial(self, hot: dict[str, Any]) -> list[Any]:
        """The first config, resolved before the model loads: the specs to load it with. A ConfigError
        here fails the replica's start (there is no older set to keep serving)."""
        self._desired = HotArgs.parse(self._static, hot)
        self.applied = await self._specs(self._desired, resolve=True)
        self._schedule(resolved=True)
        return self.applied

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="adapter-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # ---- the loop ---------------------------------------------------------------------------
    def _wake(self) -> None:
        self._kick.set()

    def _schedule(self, *, resolved: bool = False) -> None:
        """Set the next periodic resolution: `resolved` says tags were resolved just now."""
        if resolved or self._resolved_at is None:
            self._resolved_at = self._clock()
        d = self._desired
        tags = d is not None and any(tag_of(a.source) for a in d.adapters)
        self._next_resolve = (self._resolved_at + d.resolve_interval_s
                              if tags and d.resolve_interval_s > 0 else float("inf"))

    async def _run(self) -> None:
        while True:
            timeout = self._next_resolve - self._clock()
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._kick.wait(), None if timeout == float("inf") else timeout)
                except asyncio.TimeoutError:
                    pass
            self._kick.clear()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one round must not end live reloading
                log.exception("adapter sync round failed; the served set stays as it was")

    async def round(self) -> bool:
        """One reconcile step: resolve tags when due, then apply when the specs changed. True if applied."""
        d = self._desired
        if d is None:
            return False
        if not self._ready():
            await asyncio.sleep(0.1)  # the model is still loading; try again shortly
            self._wake()
            return False
        due = self._resolve_now or self._clock() >= self._next_resolve
        self._resolve_now = False
        specs = await self._specs(d, resolve=due)
        if due:
            self._schedule(resolved=True)
        changed = specs != self.applied
        if changed:
            log.info("applying adapters: %s", ", ".join(f"{a.name}={a.source}" for a in specs) or "(none)")
            await self._apply(specs)
            self.applied = specs
        self._report()  # after the apply, which clears an entry's older reason
        return changed

    def _report(self) -> None:
        if self._on_problem is None:
            return
        for name in self._reported.keys() - self.problems.keys():
            self._on_problem(name, None, self._reported[name])
        for name, problem in self.problems.items():
            if self._reported.get(name) != problem:
                self._on_problem(name, problem, None)
        self._reported = dict(self.problems)

    async def _specs(self, d: HotArgs, *, resolve: bool) -> list[Any]:
        out = []
        for a in d.adapters:
            tag = tag_of(a.source)
            if tag is None:
                out.append(a)
                continue
            if resolve or tag not in self._digests:
                await self._resolve_tag(a.name, tag)
            digest = self._digests.get(tag)
            out.append(a.model_copy(update={"source": pinned(tag, digest)}) if digest else a)
        live = {tag_of(a.source) for a in d.adapters} - {None}
        self._digests = {t: dg for t, dg in self._digests.items() if t in live}
        names = {a.name for a in d.adapters}
        self.problems = {n: p for n, p in self.problems.items() if n in names}
        return out

    async def _resolve_tag(self, name: str, tag: str) -> None:
        try:
            digest = await asyncio.to_thread(self._resolve, tag)
        except Exception as e:  # noqa: BLE001 - any failure keeps the digest being served
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            kept = self._digests.get(tag)
            self.problems[name] = f"cannot re-resolve {tag}: {reason}" + (f"; serving {kept}" if kept else "")
            log.warning("cannot resolve adapter %s (%s): %s; %s", name, tag, reason,
                        f"still serving {kept[:19]}" if kept else "it stays unpinned")
            if self._on_failure is not None:
                self._on_failure(name, reason)
            return
        self.problems.pop(name, None)
        old = self._digests.get(tag)
        if old and old != digest:
            log.info("adapter %s: %s moved from %s to %s", name, tag, old[:19], digest[:19])
        self._digests[tag] = digest
