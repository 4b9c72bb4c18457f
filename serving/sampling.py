"""Per-sequence sampling over one batched logits tensor: greedy rows in one argmax, the rest per row."""
from __future__ import annotations

from typing import Callable, Sequence as Seq

import torch

from .scheduler import Sequence


def sample(logits: torch.Tensor, seqs: Seq[Sequence],
           generator_for: Callable[[Sequence], torch.Generator]) -> list[int]:
    out = logits.argmax(dim=-1).tolist()
    for r, s in enumerate(seqs):
        p = s.params
        if p.repetition_penalty != 1.0:
            row = _penalize(logits[r], s.all_ids, p.repetition_penalty)
            if p.greedy:
                out[r] = int(row.argmax())
                continue
        elif p.greedy:
            continue
        else:
            row = logits[r]
        out[r] = _sample_row(row, p.temperature, p.top_k, p.top_p, generator_for(s))
    return out


def _penalize(row: torch.Tensor, ids: list[int], penalty: float) -> torch.Tensor:
    # transformers' RepetitionPenaltyLogitsProcessor: divide positive scores, multiply negative ones
    row = row.clone()
    idx = torch.tensor(sorted(set(ids)), dtype=torch.long, device=row.device)
    vals = row[idx]
    row[idx] = torch.where(vals > 0, vals / penalty, vals * penalty)
    return row


def _sample_row(row: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator) -> int:
    row = row / temperature
    if 0 < top_k < row.shape[-1]:
        kth = torch.topk(row, top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = torch.softmax(row, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        cum = sorted_p.cumsum(-1)
        drop = cum - sorted_p > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))
