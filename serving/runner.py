"""The torch side of continuous batching: one left-padded, batched KV cache over all running sequences.

Why this and not transformers' own `generate_batch`/`ContinuousBatchingManager`: see docs/serving.md.
In short, we need per-request sampling and seeds, token streaming, cancellation, peft's mixed-adapter
batches (`adapter_names=`) and plain CPU support, all at once.

Layout: row i of the cache belongs to `self.rows[i]` (a sequence id). Rows are left-padded to the
longest one; `mask` marks real positions, and each row carries its own `position_ids`, so a padded
batch computes exactly what each sequence would compute alone. Joiners are prefilled together
(left-padded) and their cache is concatenated onto the batch; leavers are dropped with an index
select, and columns that became padding for every row are trimmed. Nothing is re-computed.
"""
from __future__ import annotations

from typing import Sequence as Seq

import torch
from transformers import DynamicCache

from .kvcache import growable_cache
from .sampling import sample
from .scheduler import Sequence, Step


class BatchRunner:
    def __init__(self, model, *, pad_token_id: int, device: str | torch.device = "cpu",
                 adapter_names: dict[str | None, str] | None = None, default_seed: int = 0):
        self.model = model
        self.device = torch.device(device)
        self.pad = pad_token_id
        # maps a Sequence.adapter to the peft adapter name ("__base__" = no adapter); None when not peft
        self.adapter_names = adapter_names
        self.rows: list[int] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [B, T] long
        self.next_pos: torch.Tensor | None = None  # [B] position of the next token per row
        self.generators: dict[int, torch.Generator] = {}
        self._default_gen = torch.Generator(device="cpu").manual_seed(default_seed)

    # -- public ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, step: Step) -> dict[int, int]:
        """One iteration: prefill joiners, decode the rest, sample one token for every sequence."""
        seqs: list[Sequence] = []
        logits: list[torch.Tensor] = []
        if step.running:
            logits.append(self._decode(step.running))
            seqs += step.running
        if step.joining:
            logits.append(self._prefill(step.joining))
            seqs += step.joining
        if not seqs:
            return {}
        toks = sample(torch.cat(logits).float(), seqs, self._generator)
        return {s.id: t for s, t in zip(seqs, toks)}

    def release(self, seq_ids: Seq[int]) -> None:
        gone = set(seq_ids)
        for i in gone:
            self.generators.pop(i, None)
        keep = [i for i, sid in enumerate(self.rows) if sid not in gone]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask = self.next_pos = None
            return
        idx = torch.tensor(keep, device=self.device)
        self.mask = self.mask[idx]
        self.next_pos = self.next_pos[idx]
        cols = self.mask.any(dim=0).nonzero()
        first = int(cols[0]) if len(cols) else 0
        for layer in self.cache.layers:
            k, v = layer.keys, layer.values  # read both before assigning: keys= resets the length
            layer.keys, layer.values = k[idx, :, first:], v[idx, :, first:]
        self.mask = self.mask[:, first:]

    # -- internals -------------------------------------------------------------------------------
    def _generator(self, s: Sequence) -> torch.Generator:
        if s.params.seed is None:
            return self._default_gen
        g = self.generators.get(s.id)
        if g is None:
            g = self.generators[s.id] = torch.Generator(device="cpu").manual_seed(s.params.seed + s.index)
        return g

    def _adapter_kwargs(self, seqs: Seq[Sequence]) -> dict:
        if self.adapter_names is None:
            return {}
        return {"adapter_names": [self.adapter_names[s.adapter] for s in seqs]}

    def _forward(self, ids, mask, pos, cache, seqs):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                         use_cache=True, logits_to_keep=1, **self._adapter_kwargs(seqs))
        return out.logits[:, -1, :]

    def _decode(self, running: list[Sequence]) -> torch.Tensor:
        assert [s.id for s in running] == self.rows, "scheduler and cache rows out of sync"
        ids = torch.tensor([[s.output_ids[-1]] for s in running], device=self.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(running), 1))], dim=1)
        pos = self.next_pos.unsqueeze(1)
        logits = self._forward(ids, self.mask, pos, self.cache, running)
        self.next_pos = self.next_pos + 1
        return logits

    def _prefill(self, joining: list[Sequence]) -> torch.Tensor:
        lens = [len(s.prompt_ids) for s in joining]
        width = max(lens)
        ids = torch.full((len(joining), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(joining), width), dtype=torch.long)
        for r, s in enumerate(joining):
            ids[r, width - lens[r]:] = torch.tensor(s.prompt_ids)
            mask[r, width - lens[r]:] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growable_cache()
        logits = self._forward(ids, mask, pos, cache, joining)
        self._merge(cache, mask, torch.tensor(lens, device=self.device), [s.id for s in joining])
        return logits

    def _merge(self, cache: DynamicCache, mask: torch.Tensor, next_pos: torch.Tensor, ids: list[int]) -> None:
        if self.cache is None:
            self.cache, self.mask, self.next_pos, self.rows = cache, mask, next_pos, list(ids)
            return
        old_t, new_t = self.mask.shape[1], mask.shape[1]
        width = max(old_t, new_t)
        for old, new in zip(self.cache.layers, cache.layers):
            k, v = old.keys, old.values  # read both before assigning: keys= resets the length
            old.keys = torch.cat([_lpad(k, width), _lpad(new.keys, width)])
            old.values = torch.cat([_lpad(v, width), _lpad(new.values, width)])
        self.mask = torch.cat([_lpad(self.mask, width), _lpad(mask, width)])
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.rows += ids


def _lpad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad along the sequence axis (dim 2 for [B,H,T,D] cache tensors, dim 1 for [B,T] masks)."""
    dim = 2 if t.dim() == 4 else 1
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
