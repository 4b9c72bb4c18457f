"""IO-free core of iteration-level (continuous) batching: admission, batch membership, stop handling.

No torch, no threads, no HTTP: the engine drives it, and tests drive it with a fake step function.
Per step the engine asks `schedule()` which waiting sequences join the running batch, runs one
forward pass over joiners (prefill) and running sequences (decode), and hands the sampled tokens
back to `on_tokens()`, which appends them, detokenizes incrementally and decides who finishes.
Finished and cancelled sequences leave at once, so their slot is free on the very next step.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence as Seq

from .errors import Overloaded

Decode = Callable[[Seq[int]], str]


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
    joining: list[Sequence]
    running: list[Sequence]  # already in the batch before this step (decode)


class Scheduler:
    def __init__(self, *, max_running: int, max_queue: int, context_length: int,
                 eos_token_ids: Seq[int], decode: Decode, retry_after: int = 1,
                 decode_batch: Callable[[list[list[int]]], list[str]] | None = None):
        if max_running < 1 or max_queue < 0:
            raise ValueError(f"max_running ({max_running}) must be >= 1 and max_queue ({max_queue}) >= 0")
        self.max_running = max_running
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
        free_slots = self.max_running - len(self.running)
        if len(self.waiting) + len(seqs) > self.max_queue + max(0, free_slots):
            raise Overloaded(
                f"server is at capacity ({len(self.running)} running, {len(self.waiting)} queued); "
                f"retry after {self.retry_after}s", retry_after=self.retry_after)
        self.waiting.extend(seqs)

    def cancel(self, request_id: str) -> None:
        for s in itertools.chain(self.waiting, self.running):
            if s.request_id == request_id:
                s.cancelled = True

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    # -- one iteration ---------------------------------------------------------------------------
    def drop_cancelled(self) -> list[Sequence]:
        """Remove cancelled sequences; the engine frees their cache rows."""
        gone = [s for s in itertools.chain(self.waiting, self.running) if s.cancelled]
        for s in gone:
            s.finish_reason = "cancelled"
        self.waiting = deque(s for s in self.waiting if not s.cancelled)
        self.running = [s for s in self.running if not s.cancelled]
        return gone

    def schedule(self) -> Step:
        running = list(self.running)
        joining: list[Sequence] = []
        while self.waiting and len(running) + len(joining) < self.max_running:
            joining.append(self.waiting.popleft())
        self.running = running + joining
        return Step(joining=joining, running=running)

    def on_tokens(self, tokens: dict[int, int]) -> list[Sequence]:
        """Append each sequence's new token; return the sequences that finished (and left)."""
        done: list[Sequence] = []
        grown: list[Sequence] = []
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
