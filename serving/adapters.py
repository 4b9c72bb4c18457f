"""The served adapter set of one replica: runtime engine state, changed without a restart (issue 14).

Two tiers, each bounded:
- registered (at most `max_adapters`): fetched through `artifacts` (the node cache, digest-verified),
  checked against the model, listed in /v1/models with source and digest; requests may name it.
- resident (at most `max_resident_adapters`): attached to the running model. A request for a
  registered adapter that is not resident waits for its load (other sequences keep stepping); the
  least recently used resident adapter with no running sequence is evicted to make room.
- fairness: when every resident adapter always has running requests, none is ever idle. A cold load
  that has waited `cold_wait_s` (ServeArgs adapter_cold_wait_s) drains one resident adapter for
  itself, the least recently used: new requests for it wait (as for a cold load) while its running
  ones finish, and then it is the one evicted. So a cold load waits at most about cold_wait_s plus
  the drained adapter's longest running request plus its own load, and is never refused.

Threads: set changes (apply, load, unload, residency) run one at a time on the "adapter-loader"
thread, which fetches and reads files there; it hands the model changes to the engine thread as
one operation each (`Engine.between_steps`), so they take effect between two steps and never
during one. Requests hold a lease on their adapter while their sequences run: eviction takes only
unleased adapters, and an unloaded adapter is detached after its last lease (new requests get 404
at once). A failed fetch or check keeps the old version serving, marked unavailable with the reason.

/chat's default is KAITO's combination of the configured adapters by strength (serving.lora's
`Slots.combine`: the members' LoRA ranks side by side, each scaled by its strength, as peft's
add_weighted_adapter "cat" builds it: exact, so strength 0 adds nothing). It is rebuilt whenever a
member, its version or its strength changes; adapters loaded through the vLLM API are not members.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from contract.serveargs import DEFAULT_STRENGTH

from .errors import BadRequest, ModelNotFound, NotReady, ServingError
from .facade import ModelCard
from .lora import AdapterError, Slots, Weights, linear_shapes, read

log = logging.getLogger(__name__)

COMBINED = None  # the Sequence.adapter of /chat's strength combination


@dataclass(frozen=True)
class Spec:
    """One wanted adapter (the fields of contract.serveargs.AdapterArg)."""
    name: str
    source: str
    strength: float = DEFAULT_STRENGTH
    docker_config: str | None = None
    combine: bool = True  # a member of /chat's combination (the Workspace's adapters are; API loads are not)

    @classmethod
    def of(cls, arg: Any) -> "Spec":
        if isinstance(arg, Spec):
            return arg
        get = arg.get if isinstance(arg, dict) else (lambda k, d=None: getattr(arg, k, d))
        return cls(name=get("name"), source=get("source"), strength=float(get("strength", DEFAULT_STRENGTH)),
                   docker_config=get("docker_config"))


@dataclass(frozen=True)
class Version:
    path: Path
    digest: str


@dataclass(eq=False)
class Entry:
    spec: Spec
    version: Version | None = None  # what serves; None: never loaded
    reason: str | None = None  # why the wanted version is not serving
    key: str | None = None  # its key in serving.lora.Slots while resident
    leases: int = 0
    removing: bool = False
    draining: bool = False  # held for a cold load that waited too long: no new leases, evicted once idle
    gone: Future = field(default_factory=Future)  # done once detached after an unload

    @property
    def name(self) -> str:
        return self.spec.name


def fetch(spec: Spec) -> Version:
    """The adapter's files on this node and their digest: oci:// through the node cache (verified),
    hf:// at a commit, a local directory as is (its digest: sha256 of its files)."""
    import artifacts

    try:
        ref = artifacts.parse_source(spec.source)
        if isinstance(ref, artifacts.LocalSource):
            path = ref.path.expanduser().resolve()
            if not path.is_dir():
                raise AdapterError(f"adapter directory {path} does not exist")
            return Version(path, local_digest(path))
        if isinstance(ref, artifacts.OciReference):
            pulled = artifacts.pull(ref, docker_config=spec.docker_config)
            return Version(Path(pulled.path), pulled.digest)
        path = Path(artifacts.resolve(spec.source))
        return Version(path, f"hf:{path.name}")
    except ServingError:
        raise
    except Exception as e:  # noqa: BLE001 - artifacts' errors name the reference and the cause
        raise AdapterError(f"cannot fetch adapter {spec.name!r} from {spec.source}: {e}") from e


def local_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and p.name.startswith("adapter_")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return "sha256:" + h.hexdigest()


class AdapterRegistry:
    def __init__(self, engine, *, base_name: str, max_adapters: int = 64, max_resident: int = 8,
                 cold_wait_s: float = float("inf"), metrics=None, fetcher: Callable[[Spec], Version] = fetch,
                 on_availability: Callable[[dict[str, str]], None] | None = None):

        self.engine = engine
        self.slots = Slots(engine.runner)
        self.base_name = base_name
        self.max_adapters, self.max_resident = max_adapters, max_resident
        self.cold_wait_s = cold_wait_s  # how long a cold load waits before it drains one (inf: never)
        self.metrics = metrics
        self._fetch = fetcher
        self._on_availability = on_availability  # called with unavailable() after every change to it
        self._shapes = linear_shapes(engine.runner.model)
        self._dtype = next(engine.runner.model.parameters()).dtype
        self._budget = getattr(engine, "kv_budget", None)
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._lru: OrderedDict[int, Entry] = OrderedDict()  # resident entries (removing ones until detached)
        self._bytes: dict[str, int] = {}  # key -> bytes (engine thread)
        self._freed: Future = Future()  # done when a lease is released (a resident slot may be free)
        self._overdue: dict[str, int] = {}  # non-resident name -> its requests waiting past cold_wait_s
        self._drains: dict[str, Entry] = {}  # non-resident name -> the resident entry drained for it
        self._combined: tuple[str | None, tuple] = (None, ())  # (key, what it was built from)
        self._keys = itertools.count()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapter-loader")

    # -- the served set (loader thread) ---------------------------------------------------------
    def submit(self, fn: Callable, *args) -> Future:
        return self._loader.submit(fn, *args)

    def apply(self, specs: Iterable[Any]) -> dict[str, str]:
        """Make the registered set equal `specs`: load new ones, swap a changed digest or strength,
        unload the rest. Returns what happened per name ("added", "updated", "unchanged",
        "removed", or "failed: <reason>" with the old version still serving)."""
        wanted = [Spec.of(s) for s in specs]
        if len(wanted) > self.max_adapters:
            raise BadRequest(f"{len(wanted)} adapters exceed max_adapters ({self.max_adapters})", param="adapters")
        report: dict[str, str] = {}
        names = {s.name for s in wanted}
        for name in [n for n in self._entries if n not in names]:
            self._unregister(name)
            report[name] = "removed"
        for spec in wanted:
            report[spec.name] = self._put(spec)
        self._rebuild_combined()
        self._availability_changed()
        return report

    def load_api(self, name: str, source: str) -> None:
        """vLLM's load_lora_adapter: a 400 naming the problem leaves the set unchanged."""
        if name == self.base_name:
            raise AdapterError(f"lora_name {name!r} is the base model's name")
        if name in self._entries:
            raise BadRequest(f"The lora adapter '{name}' has already been loaded.", param="lora_name")
        if len(self._entries) >= self.max_adapters:
            raise BadRequest(f"max_adapters ({self.max_adapters}) adapters are already registered", param="lora_name")
        spec = Spec(name, source, strength=0.0, combine=False)
        try:
            version = self._fetch(spec)
            weights = self._read(version)
        except ServingError:
            self._count_failure()
            raise
        with self._lock:
            self._entries[name] = Entry(spec, version)
        self._make_resident(name, weights, evict=True)
        log.info("adapter %s loaded from %s (%s)", name, source, version.digest)

    def unload(self, name: str) -> Future:
        """Stop serving `name`: new requests get 404 now; the returned future is done once detached."""
        if name not in self._entries:
            raise ModelNotFound(f"The lora adapter '{name}' cannot be found.", param="lora_name")
        e = self._unregister(name)
        self._rebuild_combined()
        return e.gone

    def _put(self, spec: Spec) -> str:
        old = self._entries.get(spec.name)
        try:
            version = self._fetch(spec)
            same = old is not None and old.version is not None and old.version.digest == version.digest
            weights = None if same else self._read(version)
        except ServingError as err:
            return self._failed(spec, old, err.message)
        if old is None:
            if len(self._entries) >= self.max_adapters:
                return self._failed(spec, None, f"max_adapters ({self.max_adapters}) adapters are already registered")
            with self._lock:
                self._entries[spec.name] = Entry(spec, version)
            if len(self._lru) < self.max_resident:  # a free slot: attach now, from the weights just read
                self._make_resident(spec.name, weights, evict=False)
            return "added"
        if not same:
            try:
                self._swap(old, version, weights)
            except Exception as err:  # noqa: BLE001 - the weights could not be attached: the old version serves on
                log.exception("adapter %s: swap failed", spec.name)
                return self._failed(spec, old, f"cannot attach the new version: {err}")
        changed = not same or old.spec != spec or old.reason is not None
        old.spec, old.reason = spec, None
        return "updated" if changed else "unchanged"

    def _failed(self, spec: Spec, old: Entry | None, reason: str) -> str:
        log.warning("adapter %s: %s", spec.name, reason)
        self._count_failure()
        if old is None:
            if len(self._entries) < self.max_adapters:
                with self._lock:
                    self._entries[spec.name] = Entry(spec, None, reason=reason)
        else:
            old.reason = reason  # the old version keeps serving
        return f"failed: {reason}"

    def _swap(self, e: Entry, version: Version, weights: Weights) -> None:
        """A new version of a registered adapter; its running sequences switch at the next step."""
        if e.key is None:
            e.version = version
            return
        started, old, key = time.perf_counter(), e.key, self._new_key()

        def op():
            self._attach(key, weights)
            self.slots.route(e.name, key)
            self._detach(old)
        self.engine.between_steps(op).result()
        with self._lock:
            e.key, e.version = key, version
        self._observe_load(started)

    def _unregister(self, name: str) -> Entry:
        with self._lock:
            e = self._entries.pop(name)
            e.removing = True
            idle = e.leases == 0
        if self.metrics is not None:
            self.metrics.forget(name)
        if idle:
            self._detach_entry(e)
        return e

    def _detach_entry(self, e: Entry) -> None:
        """Detach a removed entry (its last lease is gone)."""
        with self._lock:
            key, e.key = e.key, None
            self._lru.pop(id(e), None)
        if key is not None:
            def op():
                self.slots.unroute(e.name, key)
                self._detach(key)
            self.engine.between_steps(op).result()
            self._gauge()
        if not e.gone.done():
            e.gone.set_result(None)

    # -- residency --------------------------------------------------------------------------------
    def _make_resident(self, name: str, weights: Weights | None = None, *, evict: bool = True,
                       lease: bool = False) -> tuple[str, Entry | None]:
        """Attach a registered adapter, evicting the least recently used idle one when full. With
        `lease` the caller holds it from then on, so no other load evicts it before its request runs.
        -> ("leased" | "resident" | "skipped" (full and not `evict`) | "full" (every resident adapter
        has running requests: wait for a release) | "retry" (gone or unservable: look again), entry)."""
        with self._lock:
            e = self._entries.get(name)
            if e is None or e.version is None:
                return "retry", None
            if e.key is not None:
                if lease and e.draining:
                    return "full", e  # drained for a cold load: wait, then load again
                if lease:
                    e.leases += 1
                    self._lru.move_to_end(id(e))
                return ("leased" if lease else "resident"), e
            victim = None
            if len(self._lru) >= self.max_resident:
                if not evict:
                    return "skipped", e
                idle = [v for v in self._lru.values() if v.leases == 0 and not v.removing]
                mine = self._drains.get(name)  # drained for this load: take it before the others
                victim = mine if any(v is mine for v in idle) else next(
                    (v for v in idle if not v.draining), idle[0] if idle else None)
                if victim is None:
                    return "full", e
                self._lru.pop(id(victim))
                victim.draining = False
                gone_key, victim.key = victim.key, None  # a new request for it now waits for a load
            version = e.version
        started = time.perf_counter()
        try:
            w = weights or self._read(version)
        except ServingError as err:
            e.reason = err.message
            self._count_failure()
            if victim is not None:
                with self._lock:
                    victim.key = gone_key
                    self._lru[id(victim)] = victim
            raise NotReady(f"adapter {name!r} cannot be loaded: {err.message}") from err
        key = self._new_key()

        def op():
            if victim is not None:
                self.slots.unroute(victim.name, gone_key)
                self._detach(gone_key)
            self._attach(key, w)
            self.slots.route(name, key)
        self.engine.between_steps(op).result()
        with self._lock:
            e.key = key
            self._lru[id(e)] = e
            e.leases += lease
        if self.metrics is not None and victim is not None:
            self.metrics.adapter_evictions.inc()
        self._observe_load(started)
        self._gauge()
        return ("leased" if lease else "resident"), e

    def _read(self, version: Version) -> Weights:
        if getattr(self.engine.runner, "static_decode", False):
            # compile_decode captures the plain model's decode step; the per-row adapter selection is not in it
            raise AdapterError("adapters cannot be served with compile_decode on; turn compile_decode off")
        return read(version.path, self._shapes, self._dtype)

    def _new_key(self) -> str:
        return f"a{next(self._keys)}"  # never reused: the prefix cache is keyed by it

    # -- engine thread: attach/detach with memory accounting -----------------------------------------
    def _attach(self, key: str, w: Weights) -> None:
        self.slots.attach(key, w)
        self._bytes[key] = w.nbytes
        self._account()

    def _detach(self, key: str) -> None:
        self.slots.detach(key)
        self._bytes.pop(key, None)
        self._account()

    def _account(self) -> None:
        """Admission counts adapter memory: resident adapters take their bytes out of the KV budget."""
        if self._budget is None:
            return
        tokens = max(1, self._budget.tokens - -(-sum(self._bytes.values()) // self._budget.bytes_per_token))
        self.engine.kv_tokens = self.engine.scheduler.kv_tokens = tokens

    # -- /chat's combination --------------------------------------------------------------------
    def _rebuild_combined(self) -> None:
        members = [e for e in self._entries.values() if e.spec.combine and e.spec.strength > 0 and e.version]
        built = tuple((e.name, e.version.digest, e.spec.strength) for e in members)
        old_key, old_built = self._combined
        if built == old_built:
            return
        temps = {e.name: (self._new_key(), self._read(e.version)) for e in members if e.key is None}
        key = self._new_key() if members else None

        def op():
            parts, total = [], 0
            for e in members:  # the non-resident members attach only for the combination
                if e.name in temps:
                    k, w = temps[e.name]
                    self.slots.attach(k, w)
                    total += w.nbytes
                else:
                    k = e.key
                    total += self._bytes.get(k, 0)
                parts.append((k, e.spec.strength))
            if key is not None:
                self.slots.combine(key, parts)
                self._bytes[key] = total
            self.slots.route(COMBINED, key)
            for k, _ in temps.values():
                self.slots.detach(k)
            if old_key is not None:
                self._detach(old_key)
            self._account()
        self.engine.between_steps(op).result()
        self._combined = (key, built)

    # -- requests (event loop) -------------------------------------------------------------------
    def lookup(self, name: str) -> Entry | None:
        e = self._entries.get(name)
        if e is not None and e.version is None:
            raise ModelNotFound(f"adapter {name!r} is unavailable: {e.reason}", param="model")
        return e

    async def acquire(self, name: str) -> Callable[[], None]:
        """Hold `name` resident while a request runs on it (waiting for its load); returns the release."""
        since, overdue = None, False
        try:
            while True:
                with self._lock:
                    e = self._entries.get(name)
                    if e is None or e.version is None:
                        raise ModelNotFound(f"model {name!r} does not exist", param="model")
                    if e.key is not None and not e.draining:
                        e.leases += 1
                        self._lru.move_to_end(id(e))
                        return lambda: self._release(e)
                    freed = self._freed
                # each waiting request asks for its own load-and-lease; the loader thread runs them in order
                load = self._loader.submit(self._make_resident, name, lease=True)
                try:
                    outcome, entry = await asyncio.shield(asyncio.wrap_future(load))
                except asyncio.CancelledError:  # the client left: give back the lease the loader takes for it
                    load.add_done_callback(lambda f: not f.exception() and f.result()[0] == "leased"
                                           and self._release(f.result()[1]))
                    raise
                if outcome == "leased":
                    return lambda: self._release(entry)
                if outcome == "full":
                    now = time.monotonic()
                    since = now if since is None else since
                    if not overdue and now - since >= self.cold_wait_s:
                        overdue = True
                        self._wait_overdue(name, +1)
                    if overdue:
                        self._drain_for(name, now - since)
                    try:  # a release, or the moment this wait becomes overdue
                        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(freed)), None if overdue or
                                               math.isinf(self.cold_wait_s) else since + self.cold_wait_s - now)
                    except asyncio.TimeoutError:
                        pass
        finally:
            if overdue:
                self._wait_overdue(name, -1)

    def _wait_overdue(self, name: str, delta: int) -> None:
        """Count the requests for `name` waiting past cold_wait_s; when none is left (loaded, or the
        clients left), the adapter drained for it takes new requests again."""
        with self._lock:
            n = self._overdue[name] = self._overdue.get(name, 0) + delta
            if n > 0:
                return
            del self._overdue[name]
            drained = self._drains.pop(name, None)
            if drained is None or not drained.draining:
                return
            drained.draining = False
            freed, self._freed = self._freed, Future()
        freed.set_result(None)  # its own waiting requests look again

    def _drain_for(self, name: str, waited: float) -> None:
        """Make sure one resident adapter drains for the overdue cold load of `name`: the least recently
        used one not removed, not already drained for another load."""
        with self._lock:
            held, wanted = self._drains.get(name), self._entries.get(name)
            if held is not None and held.draining and held.key is not None:
                return
            if wanted is None or wanted.key is not None:
                return  # gone, or resident but itself drained: it waits for its own eviction first
            victim = next((v for v in self._lru.values() if not v.removing and not v.draining), None)
            if victim is None:
                return
            victim.draining = True
            self._drains[name] = victim
        log.info("adapter %s drains for %s, whose load waited %.1fs with every resident adapter busy",
                 victim.name, name, waited)

    def _release(self, e: Entry) -> None:
        with self._lock:
            e.leases -= 1
            freed, self._freed = self._freed, Future()
            last = e.removing and e.leases == 0
        freed.set_result(None)
        if last:
            self._loader.submit(self._detach_entry, e)

    # -- reporting -------------------------------------------------------------------------------
    def cards(self) -> list[ModelCard]:
        with self._lock:
            entries = list(self._entries.values())
        return [ModelCard(id=e.name, parent=self.base_name, source=e.spec.source,
                          digest=e.version.digest if e.version else None,
                          available=e.reason is None, reason=e.reason) for e in entries]

    def mark(self, name: str, reason: str | None, *, clears: str | None = None) -> None:
        """A problem found outside a fetch (its tag could not be re-resolved): the loaded version keeps
        serving, shown unavailable with `reason` in /v1/models. `reason=None, clears=R` takes back R only,
        never a fetch failure recorded since."""
        with self._lock:
            e = self._entries.get(name)
            if e is None or e.version is None:
                return
            if reason is not None:
                e.reason = reason
            elif e.reason == clears:
                e.reason = None
        self._availability_changed()

    def unavailable(self) -> dict[str, str]:
        """Adapter name -> why its wanted version does not serve (what /v1/models marks unavailable)."""
        with self._lock:
            return {e.name: e.reason for e in self._entries.values() if e.reason is not None}

    def _availability_changed(self) -> None:
        if self._on_availability is not None:
            self._on_availability(self.unavailable())

    def names(self) -> list[str]:
        return list(self._entries)

    def resident(self) -> list[str]:
        with self._lock:
            return [e.name for e in self._lru.values() if not e.removing]

    def _count_failure(self) -> None:
        if self.metrics is not None:
            self.metrics.adapter_load_failures.inc()

    def _observe_load(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.adapter_load_seconds.observe(time.perf_counter() - started)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.adapters_resident.set(len(self._lru))

    def shutdown(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
