"""The generation engine: a scheduler and a batch runner stepped by one background thread.

Callers (HTTP handlers on an asyncio loop) submit requests with `generate()`, which admits them
synchronously (so overload is a 429 before any stream starts) and then yields `Delta`s as the
engine thread produces tokens. Leaving the async iterator early (client disconnect) cancels the
request; its sequences leave the batch on the next step.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from .errors import ContextLengthExceeded
from .scheduler import SamplingParams, Scheduler, Sequence, Step

log = logging.getLogger(__name__)

# Prompt tokens prefilled per step while other streams decode (`bench/serving/run.py --scenario
# long-join` and the HTTP sweep, docs/serving.md): prompts up to this long join whole, so a burst
# of ordinary prompts joins in one step; a longer one is chunked. GPU: not measured; a decode step
# is memory-bound there, so a larger chunk rides along almost free.
PREFILL_CHUNK = {"cpu": 256, "cuda": 512}
# ...and a chunked prompt's share per step, per decoding row (scheduler.partial_per_row): on a CPU
# a prompt token costs about what a decode row does, so 1.5 per row kept a 1,500-token joiner's
# p99 stall of 15 streams at 2.3x their p50 (2 per row: 5.8x; unpaced 256: 8.4x). GPU: unpaced.
PARTIAL_PER_ROW = {"cpu": 1.5, "cuda": None}
PREFIX_MIN_TOKENS = 128  # prompts at least this long leave their KV in the prefix cache


@dataclass
class Delta:
    index: int  # choice index
    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class EngineStats:
    running: int
    queued: int
    kv_reserved_tokens: int = 0  # what admission counts against kv_tokens


class Engine:
    def __init__(self, *, step: Callable[[Step], dict[int, int]], release: Callable[[list[int]], None],
                 decode: Callable, eos_token_ids, context_length: int, max_running: int = 16,
                 max_queue: int = 64, on_step: Callable[[EngineStats], None] | None = None,
                 decode_batch: Callable | None = None, prefill_chunk: int | None = None,
                 kv_tokens: int | None = None, partial_per_row: float | None = None):
        self._step, self._release = step, release
        self.context_length = context_length
        self.kv_tokens = kv_tokens
        self.scheduler = Scheduler(max_running=max_running, max_queue=max_queue,
                                   context_length=context_length, eos_token_ids=eos_token_ids, decode=decode,
                                   decode_batch=decode_batch, prefill_chunk=prefill_chunk, kv_tokens=kv_tokens,
                                   partial_per_row=partial_per_row)
        self._lock = threading.Condition()
        self._sinks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._pending: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue, Delta, Sequence]] = []
        self._stop = False
        self._ops: list[tuple[Callable[[], object], Future]] = []  # between_steps() work
        self._on_step = on_step
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_loaded(cls, loaded, *, kv_cache_bytes: int | None = None, prefix_cache: bool = True,
                    prefix_min_tokens: int = PREFIX_MIN_TOKENS, compile_decode: bool = False,
                    compile_options: dict | None = None, **kw) -> "Engine":
        """Build an engine over a `loading.LoadedModel` with the torch batch runner.

        The KV budget is `kv_cache_bytes`, or a share of the memory left after loading
        (serving/kvbudget.py); the prefix cache gets its fixed share of it. `compile_decode`:
        static-shape decode steps under torch.compile (serving/runner.py; `compile_options`
        replace its per-device settings).
        """
        from . import kvbudget
        from .prefixcache import PrefixCache
        from .runner import BatchRunner

        tok = loaded.tokenizer
        dtype = next(loaded.model.parameters()).dtype
        budget = kvbudget.plan(loaded.model.config, dtype.itemsize, loaded.device, kv_cache_bytes)
        prefixes = PrefixCache(budget.prefix_bytes, prefix_min_tokens) if prefix_cache else None
        runner = BatchRunner(loaded.model, pad_token_id=tok.pad_token_id, device=loaded.device,
                             prefix_cache=prefixes,  # adapters attach at runtime (serving/adapters.py)
                             compile_decode=compile_decode, compile_options=compile_options)
        kind = "cuda" if str(loaded.device).startswith("cuda") else "cpu"
        kw.setdefault("prefill_chunk", PREFILL_CHUNK[kind])
        kw.setdefault("partial_per_row", PARTIAL_PER_ROW[kind])
        kw.setdefault("kv_tokens", budget.tokens)
        eos = _eos_ids(loaded)
        engine = cls(step=runner.step, release=runner.release, eos_token_ids=eos,
                     decode=lambda ids: tok.decode(ids, skip_special_tokens=True,
                                                   clean_up_tokenization_spaces=False),
                     decode_batch=lambda windows: tok.batch_decode(windows, skip_special_tokens=True,
                                                                   clean_up_tokenization_spaces=False),
                     context_length=loaded.context_length, **kw)
        engine.runner, engine.kv_budget = runner, budget
        return engine

    # -- caller side (any thread / event loop) ---------------------------------------------------
    def stats(self) -> EngineStats:
        sch = self.scheduler
        return EngineStats(running=len(sch.running) + (sch.partial is not None), queued=len(sch.waiting),
                           kv_reserved_tokens=sch.kv_reserved())

    def check_length(self, n_prompt: int, max_tokens: int | None, param: str) -> int:
        """The effective max_tokens, or a 400 when the prompt (plus max_tokens) cannot fit."""
        limit, what = self.context_length, "this model's context"
        if self.kv_tokens is not None and self.kv_tokens < limit:  # it could never be admitted
            limit, what = self.kv_tokens, "this replica's KV cache budget"
        if n_prompt >= limit:
            raise ContextLengthExceeded(f"prompt is {n_prompt} tokens; {what} is {limit} tokens", param=param)
        room = limit - n_prompt
        if max_tokens is None:
            return room
        if max_tokens > room:
            raise ContextLengthExceeded(
                f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds {what} of {limit} tokens",
                param="max_tokens")
        return max_tokens

    async def generate(self, prompt_ids: list[int], params: SamplingParams, *, n: int = 1,
                       adapter: str | None = None, batched: bool = False,
                       interval_s: float = 0.0) -> AsyncIterator:
        """Admit now (raises Overloaded), then stream deltas until every choice finished.

        batched=True yields lists: every delta already waiting at once, so a reader that falls
        behind (e.g. across Ray Serve's replica-to-proxy hop) makes fewer, larger writes; with
        interval_s > 0 a batch is also held until interval_s after the previous one (the first
        delta and the last are never held), like Ray Serve LLM's stream_batching_interval_ms.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        rid = uuid.uuid4().hex
        seqs = [Sequence(prompt_ids=list(prompt_ids), params=params, adapter=adapter, request_id=rid, index=i)
                for i in range(n)]
        with self._lock:
            self.scheduler.add(seqs)
            self._sinks[rid] = (loop, queue)
            self._lock.notify()
        batches = self._batches(queue, rid, n, interval_s)
        return batches if batched else _flatten(batches)

    async def _batches(self, queue: asyncio.Queue, rid: str, n: int,
                       interval_s: float = 0.0) -> AsyncIterator[list[Delta]]:
        loop = asyncio.get_running_loop()
        left, last = n, float("-inf")
        try:
            while left:
                batch = [await queue.get()]
                left -= batch[0].finish_reason is not None
                while left and (wait := last + interval_s - loop.time()) > 0:
                    try:
                        d = await asyncio.wait_for(queue.get(), wait)
                    except asyncio.TimeoutError:
                        break
                    batch.append(d)
                    left -= d.finish_reason is not None
                while not queue.empty():
                    d = queue.get_nowait()
                    batch.append(d)
                    left -= d.finish_reason is not None
                last = loop.time()
                yield batch
        finally:
            if left:  # the reader left early (client disconnect): free the batch slots now
                self.cancel(rid)

    def between_steps(self, fn: Callable[[], object]) -> Future:
        """Run `fn` on the engine thread before the next step, never during one (the model's adapters
        change only there: serving/adapters.py). The future holds its result or exception."""
        fut: Future = Future()
        with self._lock:
            self._ops.append((fn, fut))
            self._lock.notify()
        return fut

    def cancel(self, rid: str) -> None:
        with self._lock:
            self.scheduler.cancel(rid)
            self._lock.notify()

    def shutdown(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(timeout=10)

    # -- engine thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                while self.scheduler.idle and not self._ops and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                ops, self._ops = self._ops, []
                gone = self.scheduler.drop_cancelled()
                step = self.scheduler.schedule()
            _run(ops)
            try:
                if gone:
                    self._release([s.id for s in gone])
                    self._forget(gone)
                if not step.joining and not step.running and step.partial is None:
                    continue
                tokens = self._step(step)
                with self._lock:
                    done = self.scheduler.on_tokens(tokens)
                    seqs = step.running + step.joining
                    if step.partial is not None and step.partial.id in tokens:
                        seqs.append(step.partial)
                for s in seqs:
                    if not s.finished:
                        self._emit(s, False)
                if done:
                    self._release([s.id for s in done])
                    self._finish(done)
                self._flush()
            except Exception:  # noqa: BLE001 - a failed step must not wedge the server
                log.exception("engine step failed; failing the sequences in this batch")
                with self._lock:
                    bad = [s for s in step.running + step.joining + [step.partial] if s and not s.finished]
                    for s in bad:
                        s.finish_reason = "error"
                    self.scheduler.running = [s for s in self.scheduler.running if not s.finished]
                    if self.scheduler.partial is not None and self.scheduler.partial.finished:
                        self.scheduler.partial = None
                self._release([s.id for s in bad])
                self._finish(bad)
                self._flush()
            if self._on_step:
                self._on_step(self.stats())

    def _emit(self, s: Sequence, finished: bool) -> None:
        sink = self._sinks.get(s.request_id)
        text = s.take_new_text()
        if sink and (text or finished):
            delta = Delta(s.index, text, s.finish_reason if finished else None, len(s.output_ids))
            self._pending.append((*sink, delta, s))

    def _flush(self) -> None:
        """Deliver this step's deltas: one thread-safe wake-up per event loop, not one per token."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for loop, queue, delta, seq in self._pending:
            by_loop.setdefault(loop, []).append((queue, delta, seq))
        self._pending = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that event loop is gone: nobody will read these streams
                for _, _, seq in items:
                    seq.cancelled = True

    def _finish(self, seqs: list[Sequence]) -> None:
        for s in seqs:
            self._emit(s, True)
        self._forget(seqs)

    def _forget(self, seqs: list[Sequence]) -> None:
        with self._lock:
            live = {s.request_id for s in self.scheduler.sequences()}
            for s in seqs:
                if s.request_id not in live:
                    self._sinks.pop(s.request_id, None)


def _run(ops: list[tuple[Callable[[], object], Future]]) -> None:
    for fn, fut in ops:
        try:
            fut.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - the caller gets it from the future
            fut.set_exception(e)


async def _flatten(batches) -> AsyncIterator[Delta]:
    try:
        async for batch in batches:
            for d in batch:
                yield d
    finally:
        await batches.aclose()


def _deliver(items) -> None:
    for queue, delta, _ in items:
        queue.put_nowait(delta)


def _eos_ids(loaded) -> list[int]:
    ids = set()
    for src in (getattr(loaded.model, "generation_config", None), getattr(loaded.model, "config", None)):
        e = getattr(src, "eos_token_id", None)
        if e is not None:
            ids.update(e if isinstance(e, (list, tuple)) else [e])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return sorted(ids)
