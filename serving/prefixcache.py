"""Prompt prefixes whose KV was computed recently, so a request sharing one skips that prefill.

An entry is the KV cache of one whole prompt (per layer, [1, heads, tokens, head_dim]) keyed by
the adapter it was computed under: a LoRA adapter changes the keys and values of every layer, so a
prefix is only ever reused for the same adapter (the base model being one more key). Position p's
KV depends only on tokens 0..p (causal attention), so the first n positions of any entry serve any
prompt that starts with the same n tokens. Entries are evicted least recently used first to stay
within a byte bound, which the engine takes out of its KV budget.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Prefix:
    tokens: int  # how many positions of `layers` to use
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [1, H, >= tokens, D]


class PrefixCache:
    def __init__(self, max_bytes: int, min_tokens: int = 256):
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens  # shorter prompts are cheap to prefill; not worth the copy
        self.bytes = 0
        self._entries: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.hits = 0

    def lookup(self, adapter: str | None, ids: list[int]) -> Prefix | None:
        """The longest cached prefix of `ids` under `adapter`, leaving at least one token to compute."""
        best_key, best = None, 0
        for key in self._entries:
            if key[0] != adapter:
                continue
            n = _common_prefix(key[1], ids)
            if n > best:
                best_key, best = key, n
        best = min(best, len(ids) - 1)  # the last prompt token must run to give the first logits
        if best_key is None or best < self.min_tokens:
            return None
        self._entries.move_to_end(best_key)
        self.hits += 1
        return Prefix(best, self._entries[best_key])

    def store(self, adapter: str | None, ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if len(ids) < self.min_tokens or self.max_bytes <= 0:
            return
        key = (adapter, tuple(ids))
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        size = _nbytes(layers)
        if size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= _nbytes(old)
        self._entries[key] = layers
        self.bytes += size


def _nbytes(layers) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
