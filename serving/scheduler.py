"""IO-free core of iteration-level (continuous) batching: admission, batch membership, stop handling.

No torch, no threads, no HTTP: the engine drives it, and tests drive it with a fake step function.
Per step the engine asks `schedule()` which waiting sequences join the running batch, runs one
forward pass over joiners (prefill) and running sequences (decode), and hands the sampled tokens
back to `on_tokens()`, which appends them, detokenizes incrementally and decides who finishes.
Finished and cancelled sequences leave at once, so their slot is free on the very next step.

Chunked prefill: while sequences are decoding, joiners get at most `prefill_chunk` prompt tokens
per step, and a prompt longer than that does not join whole. It becomes the
step's `partial` sequence and gets up to `prefill_chunk` prompt tokens per step (the runner
advances `Sequence.num_computed`, and may skip ahead when it holds the prompt's prefix), so the
running batch keeps decoding between chunks; it joins the batch with its first token.
With `partial_per_row` set, the partial's chunk is also held to that many tokens per decoding row
(at least `PARTIAL_MIN` tokens): a step that decodes R rows costs about R rows of work on a CPU, so
a chunk of 1.5R tokens keeps that step within about 3x of a plain one, while short prompts still
join whole within `prefill_chunk` (docs/serving.md, "Chunked prefill", has the sweep).

KV budget: `kv_tokens` is how many token positions of KV cache fit in the byte budget. The runner
keeps one left-padded cache whose width never exceeds its rows' longest `prompt + max_tokens`, so
`rows x that width` bounds its size; a sequence is admitted only while that bound stays within
`kv_tokens` (no preemption is ever needed), otherwise it waits, and the queue bound gives a 429.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence as Seq

from .errors import Overloaded

Decode = Callable[[Seq[int]], str]


PARTIAL_MIN = 16  # the partial's chunk never drops below this: a long prompt must make progress


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(eq=False)
class Sequence:
    """One generation stream (a request with n=3 is three sequences)."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None  # None = base model; the engine maps names to peft adapter names
    request_id: str = ""
    index: int = 0  # choice index inside its request
    id: int = field(default_factory=itertools.count().__next__)
    output_ids: list[int] = field(default_factory=list)
    text: str = ""  # detokenized output, stop strings already cut off
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    cancelled: bool = False
    # incremental detokenization offsets (TGI/vLLM style) and how much text was already emitted
    _prefix_offset: int = 0
    _read_offset: int = 0
    _emitted: int = 0
    num_computed: int = 0  # prompt tokens whose KV the runner holds (advanced by the runner)

    @property
    def reserved(self) -> int:
        """The most KV positions this sequence can occupy: its prompt plus every token it may add."""
        return len(self.prompt_ids) + self.params.max_tokens

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def take_new_text(self) -> str:
        """Text produced since the last call (held back while a stop string may still be forming)."""
        if self.finished:
            end = len(self.text)
        else:
            hold = max((len(s) - 1 for s in self.params.stop), default=0)
            end = max(self._emitted, len(self.text) - hold)
        new, self._emitted = self.text[self._emitted:end], end
        return new


@dataclass
class Step:
    joining: list[Sequence]  # prefilled whole this step
    running: list[Sequence]  # already in the batch before this step (decode)
    partial: Sequence | None = None  # a long prompt prefilled by chunks: up to partial_tokens this step
    partial_tokens: int = 0


class Scheduler:
    def __init__(self, *, max_running: int, max_queue: int, context_length: int,
                 eos_token_ids: Seq[int], decode: Decode, retry_after: int = 1,
                 decode_batch: Callable[[list[list[int]]], list[str]] | None = None,
                 prefill_chunk: int | None = None, kv_tokens: int | None = None,
                 partial_per_row: float | None = None):
        if max_running < 1 or max_queue < 0:
            raise ValueError(f"max_running ({max_running}) must be >= 1 and max_queue ({max_queue}) >= 0")
        if prefill_chunk is not None and prefill_chunk < 1:
            raise ValueError(f"prefill_chunk ({prefill_chunk}) must be >= 1 or None (no chunking)")
        self.max_running = max_running
        self.prefill_chunk = prefill_chunk  # None: every prompt is prefilled whole
        self.partial_per_row = partial_per_row  # None: the partial gets the whole chunk budget
        self.kv_tokens = kv_tokens  # None: no KV budget beyond max_running x context
        self.partial: Sequence | None = None
        self.max_queue = max_queue
        self.context_length = context_length
        self.eos = frozenset(eos_token_ids)
        self.decode = decode
        self.decode_batch = decode_batch or (lambda windows: [decode(w) for w in windows])
        self.retry_after = retry_after
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    # -- admission -------------------------------------------------------------------------------
    def add(self, seqs: Seq[Sequence]) -> None:
        """Queue a request's sequences atomically, or refuse them all when the queue is full."""
        if len(self.waiting) + len(seqs) - self._room(seqs) > self.max_queue:
            raise Overloaded(
                f"server is at capacity ({len(self.running)} running, {len(self.waiting)} queued); "
                f"retry after {self.retry_after}s", retry_after=self.retry_after)
        self.waiting.extend(seqs)

    def _room(self, seqs: Seq[Sequence]) -> int:
        """How many of the waiting sequences, then `seqs`, the batch could take now (slots and KV)."""
        rows = [*self.running, *([self.partial] if self.partial else [])]
        for s in itertools.chain(self.waiting, seqs):
            if len(rows) >= self.max_running or not self._fits(rows, s):
                break
            rows.append(s)
        return len(rows) - len(self.running) - (self.partial is not None)

    def cancel(self, request_id: str) -> None:
        for s in self.sequences():
            if s.request_id == request_id:
                s.cancelled = True

    def sequences(self):
        """Every sequence the scheduler holds: waiting, running and the partial prompt."""
        return itertools.chain(self.waiting, self.running, [self.partial] if self.partial else [])

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running and self.partial is None

    def kv_reserved(self, extra: Seq[Sequence] = ()) -> int:
        """KV positions the cache may reach: rows x the longest row's prompt + max_tokens."""
        rows = [*self.running, *([self.partial] if self.partial else []), *extra]
        return len(rows) * max((s.reserved for s in rows), default=0)

    def _fits(self, rows: list[Sequence], s: Sequence) -> bool:
        if self.kv_tokens is None:
            return True
        width = max([s.reserved, *(r.reserved for r in rows)])
        return (len(rows) + 1) * width <= self.kv_tokens

    # -- one iteration ---------------------------------------------------------------------------
    def drop_cancelled(self) -> list[Sequence]:
        """Remove cancelled sequences; the engine frees their cache rows."""
        gone = [s for s in self.sequences() if s.cancelled]
        for s in gone:
            s.finish_reason = "cancelled"
        self.waiting = deque(s for s in self.waiting if not s.cancelled)
        self.running = [s for s in self.running if not s.cancelled]
        if self.partial is not None and self.partial.cancelled:
            self.partial = None
        return gone

    def schedule(self) -> Step:
        running = list(self.running)
        joining: list[Sequence] = []
        chunk = self.prefill_chunk
        # prompt tokens to prefill this step; with nobody decoding there is no one to keep waiting
        budget = chunk if chunk is not None and (running or self.partial) else float("inf")
        rows = running + ([self.partial] if self.partial else [])
        partial_tokens = 0
        pace = self._partial_pace(len(running))
        if self.partial is not None:
            partial_tokens = min(budget, pace, len(self.partial.prompt_ids) - self.partial.num_computed)
            budget -= partial_tokens
        while self.waiting and len(rows) < self.max_running:
            s = self.waiting[0]
            if not self._fits(rows, s):
                break  # wait until the running batch frees KV space
            need = len(s.prompt_ids)
            if need <= budget:
                joining.append(self.waiting.popleft())
                budget -= need
            elif self.partial is None and budget >= 1:
                self.partial = self.waiting.popleft()  # prefilled by chunks from this step on
                partial_tokens = min(budget, pace)
                budget -= partial_tokens
            else:
                break
            rows.append(s)
        self.running = running + joining
        return Step(joining=joining, running=running, partial=self.partial, partial_tokens=int(partial_tokens))

    def _partial_pace(self, decoding: int) -> float:
        """Most prompt tokens the partial sequence gets this step, with `decoding` rows decoding."""
        if self.partial_per_row is None or not decoding:
            return float("inf")
        return max(PARTIAL_MIN, int(self.partial_per_row * decoding))

    def on_tokens(self, tokens: dict[int, int]) -> list[Sequence]:
        """Append each sequence's new token; return the sequences that finished (and left)."""
        done: list[Sequence] = []
        grown: list[Sequence] = []
        if self.partial is not None and self.partial.id in tokens:  # its prefill is complete
            self.running.append(self.partial)
            self.partial = None
        for s in self.running:
            tok = tokens.get(s.id)
            if tok is None:
                continue
            if tok in self.eos and not s.params.ignore_eos:
                s.finish_reason = "stop"
                done.append(s)
                continue
            s.output_ids.append(tok)
            grown.append(s)
        # incremental detokenization (TGI/vLLM style): decode a short window per sequence, all
        # sequences in one tokenizer call; hold back text while the last character is incomplete
        windows: list[list[int]] = []
        for s in grown:
            windows += [s.output_ids[s._prefix_offset:s._read_offset], s.output_ids[s._prefix_offset:]]
        texts = self.decode_batch(windows) if windows else []
        for k, s in enumerate(grown):
            prefix, full = texts[2 * k], texts[2 * k + 1]
            piece = ""
            if len(full) > len(prefix) and not full.endswith("\ufffd"):
                piece = full[len(prefix):]
                s.text += piece
                s._prefix_offset, s._read_offset = s._read_offset, len(s.output_ids)
            p = s.params
            if p.stop and piece:
                cut = _find_stop(s.text, p.stop, len(s.text) - len(piece) - max(map(len, p.stop)))
                if cut is not None:
                    s.text = s.text[:cut]
                    s.finish_reason = "stop"
                    done.append(s)
                    continue
            if len(s.output_ids) >= p.max_tokens or len(s.prompt_ids) + len(s.output_ids) >= self.context_length:
                s.finish_reason = "length"
                if not piece and len(full) > len(prefix):
                    s.text += full[len(prefix):]  # flush a held-back partial character
                done.append(s)
        if done:
            self.running = [s for s in self.running if not s.finished]
        return done


def _find_stop(text: str, stops: Seq[str], start: int) -> int | None:
    start = max(0, start)
    hits = [i for i in (text.find(st, start) for st in stops) if i >= 0]
    return min(hits) if hits else None
