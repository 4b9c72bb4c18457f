"""The torch side of continuous batching: one left-padded, batched KV cache over all running sequences.

Why this and not transformers' own `generate_batch`/`ContinuousBatchingManager`: see docs/serving.md.
In short, we need per-request sampling and seeds, token streaming, cancellation, mixed-adapter
batches (serving/lora.py) and plain CPU support, all at once.

Layout: a few "lanes", each a left-padded batch (class Lane): row i of a lane's cache belongs to
its `rows[i]`; `mask` marks real positions, and each row carries its own `position_ids`, so a
padded batch computes exactly what each sequence would compute alone. Joiners are prefilled
together (left-padded) and copied into the lane of similar width once; leavers are dropped with an
index select, and columns that became padding for every row are trimmed. Nothing is re-computed.
Each lane is one forward per decode step; lanes keep a 1,500-token row from padding short rows.

A long prompt (the scheduler's `partial`) is prefilled alone, chunk by chunk, into its own cache,
between decode steps of the batch, and merged like a joiner once its last chunk ran. A prompt whose
prefix is in the `PrefixCache` (same adapter) starts from a copy of that KV and computes only the
rest. Both run the model on position ids and a cache exactly as one whole prefill would.

`compile_decode` (off by default; meant for GPUs): decode steps attend over each lane's whole
buffer (a boolean 4-D mask hides the spare columns) and write the new column in place, so a step's
shapes stay the same until a join, a leave or a growth, and `torch.compile` (reduce-overhead: CUDA
graphs) reuses one graph per (rows, capacity). Prefill and adapter batches stay eager.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence as Seq

import torch
from transformers import DynamicCache

from .kvcache import growable_cache, stack_right_aligned
from .prefixcache import PrefixCache
from .sampling import sample
from .scheduler import Sequence, Step


class BatchRunner:
    def __init__(self, model, *, pad_token_id: int, device: str | torch.device = "cpu", default_seed: int = 0,
                 prefix_cache: PrefixCache | None = None, compile_decode: bool = False,
                 compile_options: dict | None = None):
        self.model = model
        self.device = torch.device(device)
        self.pad = pad_token_id
        # set by serving.lora.Slots while adapters are attached (never at construction): a map from a
        # Sequence.adapter to its adapter key ("__base__" = no adapter), and the batched LoRA forward
        self.adapter_names: dict[str | None, str] | None = None
        self.lora = None
        self.lanes: list[Lane] = []
        self.generators: dict[int, torch.Generator] = {}
        self._default_gen = torch.Generator(device="cpu").manual_seed(default_seed)
        self.prefixes = prefix_cache
        self.partial: tuple[int, DynamicCache] | None = None  # (sequence id, its cache so far)
        # adapters are refused while this is on (serving/adapters.py): the captured step has no row selection
        self.static_decode = compile_decode
        self._decode_forward = None
        if self.static_decode:
            opts = COMPILE_OPTIONS["cuda" if self.device.type == "cuda" else "cpu"] if compile_options is None \
                else compile_options
            self._decode_forward = torch.compile(self._plain_forward, **opts)

    # -- public ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, step: Step) -> dict[int, int]:
        """One iteration: decode the batch, prefill joiners, run a chunk of the partial prompt, and
        sample one token for every sequence that has all its prompt computed."""
        seqs: list[Sequence] = []
        logits: list[torch.Tensor] = []
        if step.running:
            seqs, logits = self._decode(step.running)
        if step.joining:
            logits.append(self._prefill(step.joining))
            seqs += step.joining
        if step.partial is not None and step.partial_tokens > 0:
            out = self._prefill_chunk(step.partial, step.partial_tokens)
            if out is not None:
                logits.append(out)
                seqs.append(step.partial)
        if not seqs:
            return {}
        toks = sample(torch.cat(logits).float(), seqs, self._generator)
        return {s.id: t for s, t in zip(seqs, toks)}

    def kv_bytes(self) -> int:
        """Bytes the running batch's and the partial prompt's KV tensors hold (capacity included)."""
        caches = [lane.cache for lane in self.lanes] + ([self.partial[1]] if self.partial else [])
        return sum(layer.nbytes() for c in caches for layer in c.layers)

    def release(self, seq_ids: Seq[int]) -> None:
        gone = set(seq_ids)
        for i in gone:
            self.generators.pop(i, None)
        if self.partial is not None and self.partial[0] in gone:
            self.partial = None
        self.lanes = [lane for lane in self.lanes if lane.release(gone)]

    # -- internals -------------------------------------------------------------------------------
    def _generator(self, s: Sequence) -> torch.Generator:
        if s.params.seed is None:
            return self._default_gen
        g = self.generators.get(s.id)
        if g is None:
            g = self.generators[s.id] = torch.Generator(device="cpu").manual_seed(s.params.seed + s.index)
        return g

    def _adapter_rows(self, seqs: Seq[Sequence]):
        """Serve each row of the next forward from its sequence's adapter (serving.lora.Slots.rows)."""
        if self.adapter_names is None or not seqs:
            return nullcontext()
        return self.lora.rows([self.adapter_names[s.adapter] for s in seqs])

    def _adapter_key(self, s: Sequence) -> str | None:
        """The adapter a sequence's KV is computed under (prefix entries never cross adapters)."""
        return None if self.adapter_names is None else self.adapter_names[s.adapter]

    def _forward(self, ids, mask, pos, cache, seqs):
        with self._adapter_rows(seqs):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def _plain_forward(self, ids, mask, pos, cache):
        return self._forward(ids, mask, pos, cache, ())

    def _decode(self, running: list[Sequence]) -> tuple[list[Sequence], list[torch.Tensor]]:
        by_id = {s.id: s for s in running}
        assert sorted(by_id) == sorted(i for lane in self.lanes for i in lane.rows), "scheduler and cache out of sync"
        seqs, logits = [], []
        for lane in self.lanes:
            rows = [by_id[i] for i in lane.rows]
            ids = torch.tensor([[s.output_ids[-1]] for s in rows], device=self.device)
            mask, pos = lane.advance(max(s.reserved for s in rows))
            if self.static_decode:
                logits.append(self._static_step(lane, ids, mask, pos))
            else:
                logits.append(self._forward(ids, mask, pos, lane.cache, rows))
            seqs += rows
        return seqs, logits

    def _static_step(self, lane: "Lane", ids, mask, pos) -> torch.Tensor:
        """One decode step over the lane's whole buffers: the same shapes until the lane changes."""
        layers = lane.cache.layers
        col = mask.shape[1] - 1  # this step's column (the mask already has it)
        for layer in layers:
            layer.reserve(1)
        full = torch.zeros((mask.shape[0], 1, 1, layers[0].capacity), dtype=torch.bool, device=self.device)
        full[:, 0, 0, :col + 1] = mask.bool()
        at = torch.tensor([col], device=self.device)
        for layer in layers:
            layer.write_at = at
        try:
            out = self._decode_forward(ids, full, pos, lane.cache)
        finally:
            for layer in layers:
                layer.write_at = None
        for layer in layers:
            layer.filled(col + 1)
        return out

    def _prefill(self, joining: list[Sequence]) -> torch.Tensor:
        """Prefill whole prompts: the ones with a cached prefix alone from it, the rest batched."""
        hits = {}
        if self.prefixes is not None:
            for s in joining:
                if (p := self.prefixes.lookup(self._adapter_key(s), s.prompt_ids)) is not None:
                    hits[s.id] = p
        order = [s.id for s in joining]
        out: dict[int, torch.Tensor] = {}
        cold = [s for s in joining if s.id not in hits]
        if cold:
            for s, row in zip(cold, self._prefill_batch(cold)):
                out[s.id] = row
        for s in joining:
            if s.id in hits:
                out[s.id] = self._prefill_one(s, len(s.prompt_ids), hits[s.id])[0]
        return torch.stack([out[i] for i in order])

    def _prefill_batch(self, joining: list[Sequence]) -> torch.Tensor:
        lens = [len(s.prompt_ids) for s in joining]
        width = max(lens)
        ids = torch.full((len(joining), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(joining), width), dtype=torch.long)
        for r, s in enumerate(joining):
            ids[r, width - lens[r]:] = torch.tensor(s.prompt_ids)
            mask[r, width - lens[r]:] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growable_cache(self.static_decode)
        logits = self._forward(ids, mask, pos, cache, joining)
        for r, s in enumerate(joining):
            s.num_computed = lens[r]
            self._remember(s, [(layer.keys[r:r + 1, :, width - lens[r]:], layer.values[r:r + 1, :, width - lens[r]:])
                               for layer in cache.layers])
        self._merge(cache, mask, torch.tensor(lens, device=self.device), joining)
        return logits

    def _prefill_chunk(self, s: Sequence, budget: int) -> torch.Tensor | None:
        """Run up to `budget` more prompt tokens of the partial sequence; its logits once complete."""
        if self.partial is None or self.partial[0] != s.id:
            prefix = self.prefixes.lookup(self._adapter_key(s), s.prompt_ids) if self.prefixes else None
            self.partial = (s.id, self._seeded_cache(s, prefix))
        end = min(len(s.prompt_ids), s.num_computed + budget)
        if end < len(s.prompt_ids):
            self._extend(s, self.partial[1], end)
            return None
        return self._prefill_one(s, end, None)

    def _prefill_one(self, s: Sequence, end: int, prefix) -> torch.Tensor:
        """Compute the prompt of one sequence up to its end (from a prefix or the partial cache so
        far), merge it into the batch and return its last logits."""
        if prefix is not None:
            cache = self._seeded_cache(s, prefix)
        else:
            cache = self.partial[1]
            self.partial = None
        logits = self._extend(s, cache, end)
        n = len(s.prompt_ids)
        self._remember(s, [(layer.keys, layer.values) for layer in cache.layers])
        mask = torch.ones((1, n), dtype=torch.long, device=self.device)
        self._merge(cache, mask, torch.tensor([n], device=self.device), [s])
        return logits

    def _seeded_cache(self, s: Sequence, prefix) -> DynamicCache:
        cache = growable_cache(self.static_decode)
        s.num_computed = 0
        if prefix is not None:
            for i, (k, v) in enumerate(prefix.layers):  # a copy: the batch writes into its cache
                cache.update(k[:, :, :prefix.tokens].clone(), v[:, :, :prefix.tokens].clone(), i)
            s.num_computed = prefix.tokens
        return cache

    def _extend(self, s: Sequence, cache: DynamicCache, end: int) -> torch.Tensor:
        start = s.num_computed
        for layer in cache.layers:  # a prompt's own cache never needs more than the prompt (the KV budget's count)
            layer.limit = len(s.prompt_ids)
        ids = torch.tensor([s.prompt_ids[start:end]], device=self.device)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        pos = torch.arange(start, end, device=self.device).unsqueeze(0)
        logits = self._forward(ids, mask, pos, cache, [s])
        s.num_computed = end
        return logits

    def _remember(self, s: Sequence, layers) -> None:
        if self.prefixes is not None and len(s.prompt_ids) >= self.prefixes.min_tokens:
            self.prefixes.store(self._adapter_key(s), s.prompt_ids,
                                [(k.clone(), v.clone()) for k, v in layers])

    def _merge(self, cache: DynamicCache, mask: torch.Tensor, next_pos: torch.Tensor, seqs: list[Sequence]) -> None:
        """Add prefilled rows to the lane of similar width (or a new lane), so a long prompt never
        pads every short row to its length, nor a short row attends over a long one's padding."""
        width = mask.shape[1]
        fits = [lane for lane in self.lanes if _similar(lane.width, width)]
        if not fits and len(self.lanes) >= MAX_LANES:
            fits = [min(self.lanes, key=lambda lane: abs(lane.width - width))]
        if fits:
            fits[0].merge(cache, mask, next_pos, seqs)
        else:
            self.lanes.append(Lane(cache, mask, next_pos, seqs))


# torch.compile settings of the static decode step. GPU: CUDA graphs (recorded once per (rows,
# capacity) and replayed while the lane keeps that shape). CPU: inductor's C++ kernels, slow to
# compile (about 100 s for the tests' tiny model on 2 busy cores). Shapes become dynamic after the
# first recompile (torch.compile's default).
COMPILE_OPTIONS = {"cuda": {"mode": "reduce-overhead"}, "cpu": {}}

# Separate left-padded batches by width: one more forward per lane per step (cheap against a
# batch that attends over, and copies, another row's 1,500 positions of padding).
MAX_LANES = 3
_LANE_FLOOR = 256  # rows shorter than this share a lane whatever their lengths


def _similar(a: int, b: int) -> bool:
    a, b = max(a, _LANE_FLOOR), max(b, _LANE_FLOOR)
    return max(a, b) <= 2 * min(a, b)


class Lane:
    """One left-padded batch: row i of `cache` belongs to `rows[i]`; `mask` marks real positions and
    `next_pos` is each row's next position, so a padded row computes what it would alone."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor, next_pos: torch.Tensor, seqs: list[Sequence]):
        self.cache, self.mask, self.next_pos = cache, mask, next_pos
        self.rows = [s.id for s in seqs]
        self.limit = max(s.reserved for s in seqs)  # the longest prompt + max_tokens: the widest need

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    def advance(self, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask and position ids for one decode step of every row."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        pos = self.next_pos.unsqueeze(1)
        self.next_pos = self.next_pos + 1
        # the cache never needs to be wider than its longest row can get (the KV budget counts that)
        self.limit = limit
        for layer in self.cache.layers:
            layer.limit = limit
        return self.mask, pos

    def merge(self, cache: DynamicCache, mask: torch.Tensor, next_pos: torch.Tensor, seqs: list[Sequence]) -> None:
        self.limit = max([self.limit, *(s.reserved for s in seqs)])
        width = max(self.width, mask.shape[1])
        cap = max(width + 1, min(self.limit, 2 * width))  # room for the next decode steps, in the same copy
        for old, new in zip(self.cache.layers, cache.layers):
            z = old.zero_spare
            old.set_buffers(stack_right_aligned([old.keys, new.keys], width, cap, z),
                            stack_right_aligned([old.values, new.values], width, cap, z), width)
        self.mask = torch.cat([_lpad(self.mask, width), _lpad(mask, width)])
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.rows += [s.id for s in seqs]

    def release(self, gone: set[int]) -> bool:
        """Drop the rows in `gone` and the columns that became padding for all; False when empty."""
        keep = [i for i, sid in enumerate(self.rows) if sid not in gone]
        if len(keep) == len(self.rows):
            return True
        if not keep:
            return False
        self.rows = [self.rows[i] for i in keep]
        idx = torch.tensor(keep, device=self.mask.device)
        self.mask, self.next_pos = self.mask[idx], self.next_pos[idx]
        cols = self.mask.any(dim=0).nonzero()
        first = int(cols[0]) if len(cols) else 0
        for layer in self.cache.layers:
            k, v = layer.keys, layer.values  # read both before assigning: keys= resets the length
            layer.keys, layer.values = k[idx, :, first:], v[idx, :, first:]
        self.mask = self.mask[:, first:]
        return True


def _lpad(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad a [B, T] mask to `width` columns."""
    missing = width - mask.shape[1]
    return mask if missing == 0 else torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)
